"""`nasp search` on two ranks: one process prints the result, not every rank."""

from __future__ import annotations

import contextlib
import io

from dist_util import run_ranks, values
from nasp.cli import main


def _search(d, out: str) -> str:
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["search", "--out", out, "--max-train-samples", "128", "--channels", "4",
                     "--layers", "3", "--batch-size", "16", "--max-steps-per-epoch", "1",
                     "--epochs", "1", "--quiet", "--device", "cpu"])
    assert code == 0
    return buf.getvalue()


def test_only_rank_0_prints_the_genotype_and_the_run_folder(tmp_path):
    shown = values(run_ranks(_search, tmp_path, timeout_s=60.0, join_s=300.0,
                             out=str(tmp_path / "run")))
    assert "genotype:" in shown[0] and "run folder:" in shown[0]
    assert shown[1] == ""
