"""A resume computes on the checkpoint's CPU threads, so it ends exactly as the straight run,
whatever this process's thread setting; ``--threads`` overrides it, saying once that the
results will then differ.

The runs here compute on one thread and the resuming process is set to two (another machine's
default): one thread keeps the tests fast on a busy machine, where OpenMP threads spin.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from nasp.cli import main
from nasp.configs import SearchConfig, resolve
from nasp.loops.search import run_search

OPTIONS = dict(max_train_samples=128, channels=4, layers=3, batch_size=16, epochs=2,
               max_steps_per_epoch=2, device="cpu")
TINY = ["--max-train-samples", "128", "--channels", "4", "--layers", "3", "--batch-size", "16",
        "--epochs", "2", "--max-steps-per-epoch", "2", "--device", "cpu", "--quiet"]


class Stop(Exception):
    pass


def _stop(epoch, record):
    raise Stop


def _interrupted(out: Path, recorded: int | None = None) -> None:
    """A one-thread search stopped after its first epoch; ``recorded``: the thread count its
    checkpoint says it ran on (as if written on another machine)."""
    cfg = resolve(SearchConfig, {**OPTIONS, "threads": 1, "out": str(out)})
    with pytest.raises(Stop):
        run_search(cfg, out, progress=False, on_epoch_end=_stop)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    assert ckpt["threads"] == 1
    if recorded is not None:
        ckpt["threads"] = recorded
        torch.save(ckpt, out / "checkpoint.pt")
    config = json.loads((out / "config.json").read_text())
    (out / "config.json").write_text(json.dumps({**config, "threads": None}))  # not given


@pytest.fixture
def two_threads():
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(1)


def _arch(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "arch.jsonl").read_text().splitlines()]


def test_a_resume_uses_the_checkpoints_threads_and_ends_as_the_straight_run(tmp_path, capsys,
                                                                             two_threads):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(["search", "--threads", "1", "--out", str(straight), *TINY]) == 0
    _interrupted(cut)
    assert torch.get_num_threads() == 2  # this process's setting, given back by each run
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0
    assert "note:" not in capsys.readouterr().err
    result = json.loads((cut / "result.json").read_text())
    assert result["environment"]["device"]["threads"] == 1  # computed on the checkpoint's
    assert torch.load(cut / "checkpoint.pt", weights_only=True)["threads"] == 1
    assert _arch(cut) == _arch(straight)
    assert (cut / "genotype.json").read_text() == (straight / "genotype.json").read_text()
    assert torch.get_num_threads() == 2


def test_threads_given_to_a_resume_win_and_say_once_that_results_will_differ(tmp_path, capsys,
                                                                              two_threads):
    cut = tmp_path / "cut"
    _interrupted(cut, recorded=3)
    assert main(["search", "--resume", str(cut), "--threads", "1", "--quiet"]) == 0
    err = capsys.readouterr().err
    assert err.count("note:") == 1
    assert ("note: resuming on 1 thread; the checkpoint was written on 3, so the results will "
            "differ from a run that went straight through (leave out --threads to use 3)") in err
    result = json.loads((cut / "result.json").read_text())
    assert result["environment"]["device"]["threads"] == 1
    assert json.loads((cut / "config.json").read_text())["threads"] == 1
