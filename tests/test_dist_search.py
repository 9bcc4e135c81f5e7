"""A prototype of the data-parallel search step, built from the library's pieces.

Per step, as the search loop will do it: each rank reads its shard of the global batch, the
strategy's architecture step runs with its gradients averaged over ranks (``Dist.average_``,
the ``ArchContext.reduce`` hook), the weight step's gradients are averaged in buckets
(``Dist.reduce_gradients``) and clipped after the reduction. The search loop does the same
(tests/test_dist_loop.py runs it on two ranks).
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dist_util import run_ranks, values
from helpers import loss_fn, make_strategy, tiny_batch
from nasp.distributed import Dist
from nasp.ops import OPS
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.strategies import ArchContext
from nasp.supernet.cnn import SearchCNN

# a small space keeps a step a tenth of a second on a busy CPU: 5 edges of 4 ops, two of them
# with weights, one pruned edge per cell
CELL = CellSpec(ops=("skip_connect", "sep_conv_3x3", "conv_1x1", "avg_pool_3x3"), nodes=2,
                inputs=2, keep=2)
SPACE = SearchSpace("tiny", "cnn", {"normal": CELL,
                                    "reduce": dataclasses.replace(CELL, reduction=True)},
                    op_registry=OPS)

STRATEGIES = ["nasp", "darts", "darts2", "asap"]
OPTIONS = {"nasp": {"arch_lr": 0.05}, "darts": {"arch_lr": 0.05},
           "darts2": {"arch_lr": 0.05}, "asap": {"arch_lr": 0.3, "theta0": 0.2}}
STEPS, BATCH = 4, 8


def _shard(batch, d: Dist):
    lo, hi = d.batch_rows(0, len(batch[1]))
    return tuple(t[lo:hi] for t in batch)


def _search(d: Dist, strategy: str, batch_stats: bool = True):
    torch.manual_seed(0)
    net = SearchCNN(SPACE, 1, 5, channels=4, layers=3).double()
    if not batch_stats:  # BN on its running statistics: a per-sample function of the input
        for m in net.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                m.eval()
    s = make_strategy(strategy, SPACE, seed=0, **OPTIONS[strategy])
    if d.rank:  # a rank that started elsewhere: the broadcast must bring it in line
        with torch.no_grad():
            for t in [*net.parameters(), *s.parameters()]:
                t.add_(0.01 * torch.randn_like(t))
    d.broadcast_state(net, s.parameters())
    s.restored()  # NASP's Ā, ASAP's masks follow the new parameters
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=3e-4)
    arch0 = [a.clone() for a in s.parameters()]
    start = {n: p.detach().clone() for n, p in net.named_parameters()}
    ran: set[str] = set()
    ctx = ArchContext(loss_fn(net), params, opt, reduce=d.average_)
    for step in range(STEPS):
        train = _shard(tiny_batch(BATCH, size=8, seed=10 + step), d)
        val = _shard(tiny_batch(BATCH, size=8, seed=100 + step), d)
        s.arch_step(ctx, train, val)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(net(train[0], s.weighting()), train[1]).backward()
        d.reduce_gradients(params)
        nn.utils.clip_grad_norm_(params, 5.0)
        ran |= {n for n, p in net.named_parameters() if p.grad is not None}
        opt.step()
    d.average_buffers(net)  # before validation and checkpoints
    return {"arch": [a.detach().clone() for a in s.parameters()], "arch0": arch0,
            "weights": {n: p.detach().clone() for n, p in net.named_parameters()},
            "buffers": [b.clone() for b in net.buffers()], "start": start, "ran": ran,
            "genotype": str(s.genotype()), "bytes": d.bytes_reduced,
            "alive": int(sum(int(a.sum()) for a in s.alive.values()))
            if strategy == "asap" else None}


_cache: dict = {}


def _two_ranks(tmp_path_factory, strategy: str, batch_stats: bool = True):
    key = (strategy, batch_stats)
    if key not in _cache:
        _cache[key] = values(run_ranks(_search, tmp_path_factory.mktemp("ranks"),
                                       strategy=strategy, batch_stats=batch_stats))
    return _cache[key]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_search_steps_leave_arch_and_weights_bit_identical_on_both_ranks(tmp_path_factory,
                                                                         strategy):
    r0, r1 = _two_ranks(tmp_path_factory, strategy)
    assert all(torch.equal(a, b) for a, b in zip(r0["arch"], r1["arch"]))
    assert all(torch.equal(r0["weights"][n], r1["weights"][n]) for n in r0["weights"])
    assert all(torch.equal(a, b) for a, b in zip(r0["buffers"], r1["buffers"]))
    assert r0["genotype"] == r1["genotype"]
    # and the steps did move them
    assert not all(torch.equal(a, b) for a, b in zip(r0["arch"], r0["arch0"]))
    assert not all(torch.equal(r0["weights"][n], r0["start"][n]) for n in r0["weights"])
    if strategy == "asap":
        assert r0["alive"] < 2 * CELL.num_edges * CELL.num_ops  # pruned, identically


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_two_ranks_with_global_batch_equal_one_rank(tmp_path_factory, strategy):
    """On a network without batch statistics the mean of the shards' gradients is the global
    batch's gradient, so 2 ranks at global batch B follow 1 rank at batch B."""
    r0, _ = _two_ranks(tmp_path_factory, strategy, batch_stats=False)
    one = _search(Dist(), strategy, batch_stats=False)
    assert one["genotype"] == r0["genotype"]
    for a, b in zip(one["arch"], r0["arch"]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)
    for n, w in one["weights"].items():
        torch.testing.assert_close(r0["weights"][n], w, rtol=1e-5, atol=1e-7)
    assert one["ran"] == r0["ran"]


def test_weights_of_ops_that_never_ran_are_untouched_on_every_rank(tmp_path_factory):
    ranks = _two_ranks(tmp_path_factory, "nasp")
    assert ranks[0]["ran"] == ranks[1]["ran"]
    idle = [n for n in ranks[0]["weights"] if n not in ranks[0]["ran"]]
    assert len([n for n in idle if ".edges." in n]) >= 10  # candidate ops that never ran
    for r in ranks:
        assert all(torch.equal(r["weights"][n], r["start"][n]) for n in idle)
        assert not all(torch.equal(r["weights"][n], r["start"][n]) for n in r["ran"])


def test_nasp_reduces_only_the_gradients_of_ops_that_ran(tmp_path_factory):
    """Fewer bytes than DARTS, which reduces every op's gradient (here 2 of 4 ops have
    weights; the paper-size ratio is measured by benchmarks/scaling.py)."""
    nasp = _two_ranks(tmp_path_factory, "nasp")[0]["bytes"]
    darts = _two_ranks(tmp_path_factory, "darts")[0]["bytes"]
    assert nasp < darts / 2, (nasp, darts)
