"""`nasp search` on two ranks: one process prints the result, not every rank."""

from __future__ import annotations

import contextlib
import io
import json

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


def _continue(d, outs: dict[int, str], **options) -> tuple[str, dict]:
    from nasp.api import search_or_continue

    result, how = search_or_continue(progress=False, out=outs[d.rank], **options)
    return how, result


SEARCH = dict(max_train_samples=128, channels=4, layers=3, batch_size=16,
              max_steps_per_epoch=2, epochs=1, device="cpu")


def test_continue_does_what_rank_0_finds_when_the_ranks_see_different_folders(tmp_path):
    """`search --continue` on machines with node-local disks (or a network filesystem's
    stale cache): rank 1 does not see the finished run rank 0 sees. Every rank must still
    reuse it; a rank that started the search instead would wait for the others until the
    timeout. A run made with other options is refused on every rank alike."""
    import nasp

    done = tmp_path / "node0" / "run"
    nasp.search(out=str(done), progress=False, **SEARCH)
    outs = {0: str(done), 1: str(tmp_path / "node1" / "run")}  # node 1 sees no run there
    r0, r1 = values(run_ranks(_continue, tmp_path, timeout_s=20.0, join_s=120.0, outs=outs,
                              **SEARCH))
    assert r0[0] == r1[0] == "reused"
    assert r0[1] == r1[1] == json.loads((done / "result.json").read_text())
    assert not (tmp_path / "node1").exists()

    refused = run_ranks(_continue, tmp_path, timeout_s=20.0, join_s=120.0, outs=outs,
                        **{**SEARCH, "epochs": 2})
    assert [r.get("error") for r in refused] == ["NaspError", "NaspError"]
    assert refused[0]["message"] == refused[1]["message"]
    assert "made with other options" in refused[1]["message"]


def _search_to(d, outs: dict[int, str], **options) -> str:
    import nasp

    return str(nasp.search(out=outs[d.rank], progress=False, **options).genotype)


def test_a_new_run_is_checked_against_rank_0s_folder_only(tmp_path):
    """Only rank 0 writes, so only its folder can refuse a new run: an old run in the folder
    of the same name on another machine's disk (here: rank 1's path) does not stop it, and
    rank 0's refusal stops every rank with an error rather than a wait."""
    import nasp

    old = tmp_path / "node1" / "run"
    nasp.search(out=str(old), progress=False, **SEARCH)  # a leftover on "node 1"
    outs = {0: str(tmp_path / "node0" / "run"), 1: str(old)}
    g0, g1 = values(run_ranks(_search_to, tmp_path, timeout_s=20.0, join_s=120.0, outs=outs,
                              **SEARCH))
    assert g0 == g1
    assert (tmp_path / "node0" / "run" / "result.json").exists()

    outs = {0: str(old), 1: str(tmp_path / "node1" / "other")}  # rank 0's folder holds a run
    refused = run_ranks(_search_to, tmp_path, timeout_s=20.0, join_s=120.0, outs=outs, **SEARCH)
    assert refused[0]["error"] == "NaspError" and "already holds a run" in refused[0]["message"]
    assert refused[1]["error"] == "NaspError"
    assert "another process of this run failed" in refused[1]["message"]


def _decide(d, fail: str) -> int:
    def make() -> int:
        if fail == "os":
            raise OSError("disk gone")
        return 40 + d.rank + 2  # rank 0's value, 42, is what every rank gets

    return d.from_main(make)


def test_from_main_gives_rank_0s_value_and_failure_to_every_rank(tmp_path):
    assert values(run_ranks(_decide, tmp_path, fail="")) == [42, 42]
    r0, r1 = run_ranks(_decide, tmp_path, fail="os")
    assert r0["error"] == "OSError"  # rank 0 raises its own error, after telling the others
    assert r1["error"] == "NaspError" and "rank 0 failed: OSError: disk gone" in r1["message"]
