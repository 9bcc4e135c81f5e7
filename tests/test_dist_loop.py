"""The search and training loops on two gloo ranks (forked processes, CPU): what torchrun would
run, driven through ``nasp.search`` / ``nasp.train`` inside a process group the caller made."""

from __future__ import annotations

import json
import os
import signal

import pytest
import torch

import nasp
from dist_util import run_ranks, values
from helpers import TINY, use_synthetic_task, without_batch_norm
from nasp.distributed import Dist

BUNDLED = dict(max_train_samples=128, channels=4, layers=3, batch_size=16,
               max_steps_per_epoch=2, epochs=2, device="cpu", preset="quick")


def _state(res) -> dict:
    """What must be identical on every rank after a search."""
    return {"arch": [t.detach().clone() for t in res.strategy.parameters()],
            "weights": {n: p.detach().clone() for n, p in res.model.named_parameters()},
            "buffers": {n: b.clone() for n, b in res.model.named_buffers()},
            "genotype": res.genotype.to_dict(),
            "metrics": [{k: m[k] for k in ("train_loss", "valid_acc")} for m in res.metrics]}


def _search(d: Dist, **options) -> dict:
    return _state(nasp.search(progress=False, **options))


def _assert_same(a: dict, b: dict) -> None:
    assert all(torch.equal(x, y) for x, y in zip(a["arch"], b["arch"], strict=True))
    assert all(torch.equal(a["weights"][n], b["weights"][n]) for n in a["weights"])
    assert all(torch.equal(a["buffers"][n], b["buffers"][n]) for n in a["buffers"])
    assert a["genotype"] == b["genotype"] and a["metrics"] == b["metrics"]


@pytest.mark.parametrize("strategy", ["nasp", "darts2"])
def test_a_search_in_a_callers_group_keeps_every_rank_identical(tmp_path, strategy):
    out = tmp_path / "run"
    r0, r1 = values(run_ranks(_search, tmp_path, timeout_s=60, join_s=300,
                              out=str(out), strategy=strategy, **BUNDLED))
    _assert_same(r0, r1)
    # one writer: one line per epoch, the checkpoint records the world size
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0, 1]
    assert torch.load(out / "checkpoint.pt", weights_only=True)["world_size"] == 2


def _synthetic_search(d: Dist, monkeypatch_batch_stats: bool, **options) -> dict:
    from _pytest.monkeypatch import MonkeyPatch

    mp = MonkeyPatch()
    use_synthetic_task(mp, batch_stats=monkeypatch_batch_stats)
    try:
        return _state(nasp.search(progress=False, out=False, **options))
    finally:
        mp.undo()


@pytest.mark.parametrize("strategy", ["nasp", "darts"])
def test_two_ranks_at_global_batch_b_equal_one_rank_at_b(tmp_path, strategy):
    """On a network without batch statistics the mean of the shards' gradients is the global
    batch's gradient: the search at 2 ranks follows the search at 1 rank."""
    options = dict(TINY, strategy=strategy, epochs=2, arch_lr=0.05)
    r0, r1 = values(run_ranks(_synthetic_search, tmp_path, timeout_s=60, join_s=300,
                              monkeypatch_batch_stats=False, **options))
    one = _synthetic_search(Dist(), False, **options)
    _assert_same(r0, r1)
    assert one["genotype"] == r0["genotype"]
    # Adam divides by the gradient's running RMS: where a component of the architecture
    # gradient is near zero, summing the batch in two shards instead of one changes its rounding
    # and the step by up to a few 1e-5 (seen on an AVX-512 CPU); a wrong shard moves α by
    # O(arch_lr) = 5e-2
    for a, b in zip(one["arch"], r0["arch"], strict=True):
        torch.testing.assert_close(b, a, rtol=1e-4, atol=5e-4)
    for n, w in one["weights"].items():
        torch.testing.assert_close(r0["weights"][n], w, rtol=1e-4, atol=1e-6)


def _train(d: Dist, strip: bool, **options) -> dict:
    import nasp.loops.train_cnn as train_cnn

    build = train_cnn.build_eval_model

    def without_bn(*a, **kw):
        net = build(*a, **kw)
        without_batch_norm(net)
        return net

    train_cnn.build_eval_model = without_bn if strip else build
    try:
        result = nasp.train(progress=False, **options)
    finally:
        train_cnn.build_eval_model = build
    model = torch.load(os.path.join(options["out"], "checkpoint.pt"), weights_only=True)
    return {"result": result, "model": model["model"]} if d.is_main else {"result": result}


def test_nasp_train_at_two_ranks_equals_one_rank_without_batch_statistics(tmp_path):
    options = dict(genotype="DARTS_V1", max_train_samples=128, channels=4, layers=3,
                   batch_size=16, max_steps_per_epoch=3, epochs=2, device="cpu",
                   drop_path_prob=0.0, auxiliary=False, cutout=0, log_every=1)
    r0, r1 = values(run_ranks(_train, tmp_path, timeout_s=60, join_s=300, strip=True,
                              out=str(tmp_path / "two"), **options))
    one = _train(Dist(), True, out=str(tmp_path / "one"), **options)
    assert r0["result"]["test_acc"] == r1["result"]["test_acc"]
    for k, w in one["model"].items():
        torch.testing.assert_close(r0["model"][k], w, rtol=1e-4, atol=1e-6)
    assert abs(one["result"]["test_loss"] - r0["result"]["test_loss"]) < 1e-4


def _killed_search(d: Dist, out: str, kill: bool, **options) -> dict:
    def die(epoch, record):
        if kill and d.rank == 1 and epoch == 0:
            os.kill(os.getpid(), signal.SIGKILL)  # kill -9 of one rank after epoch 1

    from nasp.configs import SearchConfig, resolve
    from nasp.loops.search import run_search

    cfg = resolve(SearchConfig, {**options, "out": out})
    res = run_search(cfg, out, resume=not kill and os.path.exists(
        os.path.join(out, "checkpoint.pt")), progress=False, on_epoch_end=die)
    return _state(res)


def test_kill_one_rank_and_resume_at_the_same_world_size_ends_exactly(tmp_path):
    options = dict(BUNDLED, strategy="nasp", epochs=3, dist_timeout=5.0)
    straight = values(run_ranks(_killed_search, tmp_path, timeout_s=60, join_s=300,
                                out=str(tmp_path / "straight"), kill=False, **options))
    cut = str(tmp_path / "cut")
    first = run_ranks(_killed_search, tmp_path, timeout_s=60, join_s=300, out=cut, kill=True,
                      **options)
    assert first[1] == {"exitcode": -signal.SIGKILL}
    assert first[0]["error"] == "RankFailure" and "rank 1" in first[0]["message"]
    resumed = values(run_ranks(_killed_search, tmp_path, timeout_s=60, join_s=300, out=cut,
                               kill=False, **options))
    _assert_same(resumed[0], straight[0])
    _assert_same(resumed[1], straight[0])
    # another world size is refused, naming the one to use
    with pytest.raises(nasp.NaspError, match="written by 2 process"):
        nasp.resume(cut, progress=False)


def _uneven(d: Dist, **options):
    nasp.search(progress=False, out=False, **options)


def test_a_batch_that_does_not_split_evenly_is_a_clear_error_on_every_rank(tmp_path):
    results = run_ranks(_uneven, tmp_path, timeout_s=30, **dict(BUNDLED, batch_size=15))
    for r in results:
        assert r["error"] == "NaspError"
        assert "--batch-size 15 does not split evenly over 2 ranks" in r["message"]
