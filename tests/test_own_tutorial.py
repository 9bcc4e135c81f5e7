"""docs/own-model.md's Python blocks, and README's own-model example, run as written (a
tutorial whose code fails is worse than none): every block in order, in one namespace, with the
datasets and batch the text says the reader brings, on a tiny version of them."""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch.utils.data import TensorDataset

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "own-model.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)


def test_the_tutorials_python_blocks_run_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    g = torch.Generator().manual_seed(0)
    images, labels = torch.randn(48, 1, 8, 8, generator=g), torch.randint(0, 10, (48,),
                                                                         generator=g)
    ns: dict = {"train_set": TensorDataset(images[:24], labels[:24]),
                "valid_set": TensorDataset(images[24:], labels[24:]),
                "x": images[:4], "images": images[:4]}
    blocks = python_blocks()
    assert len(blocks) >= 4
    ran = 0
    for block in blocks:
        if "nasp.load(" in block:  # loads the command-line route's run (runs/mine-train)
            continue
        exec(compile(block, f"{DOC.name} block {ran}", "exec"), ns)
        ran += 1
    arch = ns["res"].arch
    assert set(arch) == {"b1", "b2", "join"} and len(arch["join"]) == 2
    assert (tmp_path / "runs" / "mine" / "arch.json").is_file()
    # the doc's claim: the search network under the arch (eval mode) is its fixed network
    assert torch.equal(ns["y"], ns["fixed"].eval()(ns["x"]))


def test_the_readmes_own_model_example_runs_as_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    blocks = [b for b in re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(),
                                    flags=re.S) if "nasp.InputChoice(" in b]
    assert len(blocks) == 1
    g = torch.Generator().manual_seed(0)
    data = TensorDataset(torch.randn(32, 1, 8, 8, generator=g),
                         torch.randint(0, 10, (32,), generator=g))
    loader = torch.utils.data.DataLoader(data, batch_size=16)
    ns: dict = {"train_loader": loader, "valid_loader": loader}
    exec(compile(blocks[0], "README.md", "exec"), ns)
    assert set(ns["res"].arch) == {"b1", "b2", "join"}
    assert isinstance(ns["fixed"], torch.nn.Module)
