"""Collectives of nasp.distributed on 2 (and 3) gloo ranks in forked processes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from dist_util import run_ranks, values
from nasp.collectives import buckets, checksums
from nasp.distributed import Dist
from nasp.errors import NaspError


def _rank_tensor(rank: int, *shape: int, dtype=torch.float64) -> torch.Tensor:
    g = torch.Generator().manual_seed(100 + rank)
    return torch.randn(*shape, generator=g, dtype=dtype)


def _params(rank: int) -> list[nn.Parameter]:
    shapes = [(3, 4), (5,), (2, 2, 2), (7,)]
    dtypes = [torch.float64] * 3 + [torch.float32]  # a second dtype makes a second bucket
    ps = [nn.Parameter(torch.zeros(s, dtype=t)) for s, t in zip(shapes, dtypes)]
    for i, p in enumerate(ps):
        if i != 2:  # parameter 2 took no part in the step
            p.grad = _rank_tensor(rank * 10 + i, *p.shape, dtype=p.dtype)
    return ps


def _reduce(d: Dist, bucket_bytes: int):
    d.bucket_bytes = bucket_bytes
    ps = _params(d.rank)
    sent = d.reduce_gradients(ps)
    return [None if p.grad is None else p.grad.clone() for p in ps], sent, d.bytes_reduced


@pytest.mark.parametrize("bucket_bytes", [16, 1 << 20])
def test_gradient_reduction_is_the_mean_and_keeps_missing_grads_none(tmp_path, bucket_bytes):
    out = values(run_ranks(_reduce, tmp_path, bucket_bytes=bucket_bytes))
    per_rank = [_params(r) for r in range(2)]
    expect = []
    for i in range(4):
        gs = [ps[i].grad for ps in per_rank]
        expect.append(None if gs[0] is None else (gs[0] + gs[1]) / 2)
    for grads, sent, total in out:
        assert grads[2] is None
        for g, e in zip(grads, expect):
            if e is not None:
                assert g.dtype == e.dtype
                torch.testing.assert_close(g, e, rtol=1e-6, atol=0)
        assert sent == total == 12 * 8 + 5 * 8 + 7 * 4
    assert all(torch.equal(a, b) for a, b in zip(out[0][0], out[1][0]) if a is not None)


def test_buckets_keep_order_and_respect_the_cap():
    ts = [torch.zeros(4), torch.zeros(4), torch.zeros(4, dtype=torch.float64), torch.zeros(100),
          torch.zeros(1)]
    got = buckets(ts, cap_bytes=32)
    assert [[id(t) for t in b] for b in got] == [[id(ts[0]), id(ts[1])], [id(ts[3])],
                                                [id(ts[4])], [id(ts[2])]]


def _broadcast(d: Dist):
    torch.manual_seed(d.rank)  # every rank builds different weights
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    net[1].num_batches_tracked += 5 * d.rank
    arch = torch.rand(2, 3)
    d.broadcast_state(net, [arch])
    return [t.clone() for t in (*net.parameters(), *net.buffers(), arch)]


def test_broadcast_copies_rank0_parameters_buffers_and_arch(tmp_path):
    r0, r1 = values(run_ranks(_broadcast, tmp_path))
    assert all(torch.equal(a, b) for a, b in zip(r0, r1))
    torch.manual_seed(0)
    ref = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    assert torch.equal(r0[0], ref[0].weight)  # rank 0's own values, not a mix
    assert int(r1[-2]) == 0  # num_batches_tracked of rank 0


def _bn_average(d: Dist):
    bn_used, bn_idle = nn.BatchNorm1d(3, affine=False), nn.BatchNorm1d(3, affine=False)
    idle_stats = (torch.rand(3) + 0.1, torch.rand(3) + 0.5)  # identical on every rank
    bn_idle.running_mean.copy_(idle_stats[0])
    bn_idle.running_var.copy_(idle_stats[1])
    bn_used(torch.randn(8, 3, generator=torch.Generator().manual_seed(d.rank)) * (d.rank + 1))
    net = nn.ModuleList([bn_used, bn_idle])
    before = [b.clone() for b in net.buffers()]
    d.average_buffers(net)
    return before, [b.clone() for b in net.buffers()]


@pytest.mark.parametrize("world", [2, 3])
def test_batchnorm_statistics_are_averaged_and_equal_ones_untouched(tmp_path, world):
    out = values(run_ranks(_bn_average, tmp_path, world=world))
    befores = [b for b, _ in out]
    for _, after in out:
        for i in (0, 1):  # bn_used: the mean of the ranks' statistics
            torch.testing.assert_close(after[i], sum(b[i] for b in befores) / world)
        assert torch.equal(after[2], befores[0][2])  # num_batches_tracked (integer) kept
        for i in (3, 4):  # bn_idle: equal everywhere, so bit-for-bit unchanged
            assert torch.equal(after[i], befores[0][i])
    assert all(torch.equal(a, b) for a, b in zip(out[0][1], out[-1][1]))


def _metric_sums(d: Dist):
    n = (7, 4)[d.rank]  # uneven shards
    sums = {"loss_sum": torch.tensor(0.1 * n, dtype=torch.float32),
            "correct": torch.tensor(n - 1), "count": torch.tensor(n)}
    return d.sum_metrics(sums)


def test_metric_sums_are_summed_exactly_and_keep_dtypes(tmp_path):
    for s in values(run_ranks(_metric_sums, tmp_path)):
        assert s["correct"].dtype == torch.int64 and int(s["correct"]) == 9
        assert int(s["count"]) == 11
        assert s["loss_sum"].dtype == torch.float32
        assert abs(float(s["loss_sum"]) - 1.1) < 1e-6


def _check_sync(d: Dist, diverge: bool):
    named = {"A.normal": torch.full((3, 2), 0.5), "w": torch.arange(6.0),
             "buf": torch.zeros(2, dtype=torch.int64)}
    if diverge and d.rank == 1:
        named["w"][4] = torch.nextafter(named["w"][4], torch.tensor(10.0))  # one ulp
    d.check_sync(named, where="after epoch 3")
    return "in sync"


def test_check_sync_passes_when_equal(tmp_path):
    assert values(run_ranks(_check_sync, tmp_path, diverge=False)) == ["in sync"] * 2


def test_check_sync_names_the_tensor_that_differs(tmp_path):
    for r in run_ranks(_check_sync, tmp_path, diverge=True):
        assert r["error"] == "NaspError"
        assert "after epoch 3" in r["message"] and "1 of 3 tensors differ" in r["message"]
        assert "w (rank 1 differs from rank 0)" in r["message"]
        assert "A.normal" not in r["message"]


def test_checksums_see_single_bits():
    a = torch.tensor([0.0, 1.0, 2.0])
    b = a.clone()
    b[0] = -0.0  # equal as values, different bits
    c = a.flip(0).flip(0).clone()
    assert not torch.equal(checksums([a]), checksums([b]))
    assert torch.equal(checksums([a]), checksums([c]))
    assert not torch.equal(checksums([torch.tensor([1, 2])]), checksums([torch.tensor([2, 1])]))


def test_single_process_is_a_no_op():
    d = Dist()
    assert not d.enabled and d.is_main and d.world_size == 1
    p = nn.Parameter(torch.ones(3))
    p.grad = torch.full((3,), 2.0)
    q = nn.Parameter(torch.ones(2))
    assert d.reduce_gradients([p, q]) == 0 and d.bytes_reduced == 0
    assert torch.equal(p.grad, torch.full((3,), 2.0)) and q.grad is None
    sums = {"count": torch.tensor(3)}
    assert d.sum_metrics(sums) == sums
    d.check_sync({"w": p})
    d.average_buffers(nn.BatchNorm1d(2))
    d.broadcast_state(nn.Linear(2, 2))
    d.barrier()
    assert d.local_batch(63) == 63 and d.batch_rows(2, 63) == (126, 189)
    assert d.eval_range(10) == (0, 10)
    with pytest.raises(NaspError):
        d.local_batch(0)
