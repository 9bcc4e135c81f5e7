"""The own-model examples run end to end, tiny (each is one file under examples/)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_mobilenet_example_searches_with_nasp_and_darts(tmp_path, capsys):
    ex = _load("mobilenet_search")
    results = ex.main(["--epochs", "1", "--samples", "256", "--batch-size", "32", "--quiet",
                       "--out", str(tmp_path)])
    out = capsys.readouterr().out
    assert set(results) == {"nasp", "darts"} and "darts / nasp: search-step time x" in out
    blocks = [k for k in results["nasp"].arch if k.startswith("blocks.")]
    assert len(blocks) == 7
    assert all(results[s].arch[b] in {f"k{k}_e{e}" for k in (3, 5, 7) for e in (3, 6)} | {"skip"}
               for s in results for b in blocks)


def test_input_choice_example_keeps_two_inputs_per_block(tmp_path):
    pytest.importorskip("sklearn")
    ex = _load("input_choice_search")
    out = ex.main(["--epochs", "1", "--train-epochs", "1", "--quiet", "--out", str(tmp_path)])
    picks = [v for k, v in out["arch"].items() if k.startswith("inputs.")]
    assert [len(p) for p in picks] == [2, 2, 2] and 0.0 <= out["test_acc"] <= 1.0


def test_regression_example_searches_width_and_a_shared_nested_activation(tmp_path):
    pytest.importorskip("sklearn")
    ex = _load("regression_search")
    out = ex.main(["--epochs", "2", "--quiet", "--out", str(tmp_path)])
    assert set(out["arch"]) == {"block0.width", "block0.act", "block1.width", "block1.act"}
    assert {"valid_mae", "valid_r2"} <= set(out["result"].metrics[-1])
