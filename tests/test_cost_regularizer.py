"""The cost regularizer with any per-operation cost: parameters, multiply-adds, latency."""

import json

import pytest
import torch

from helpers import tiny_cfg, use_synthetic_task
from nasp.configs import SearchConfig, resolve
from nasp.errors import NaspError
from nasp.loops.search import run_search
from nasp.spaces import get_space
from nasp.strategies import regularizer_costs
from nasp.strategies.regularizer import cost_penalty


def fake_table(tmp_path, space="nasp-7"):
    """A cost table in `nasp profile`'s format with made-up latencies: op k costs k+1 ms at
    stride 1 and 10 (k+1) ms at stride 2; normal cells at two positions, reduce at one."""
    cells = get_space(space).cells
    positions = []
    for cell_type, stride, cells_at in (("normal", 1, [0, 2]), ("reduce", 1, [1]),
                                        ("reduce", 2, [1])):
        ops = {op: {"latency_ms": (k + 1) * (10 if stride == 2 else 1), "params": 7 * k,
                    "madds": 100 * k} for k, op in enumerate(cells[cell_type].ops)}
        positions.append({"cell_type": cell_type, "stride": stride, "channels": 8,
                          "input_size": [8, 8], "cells": cells_at, "ops": ops})
    table = {"format": "nasp-cost-table", "version": 1, "space": space, "positions": positions,
             "fixed": [{"part": "skeleton", "latency_ms": 1.0, "params": 0, "madds": 0}]}
    path = tmp_path / "costs.json"
    path.write_text(json.dumps(table))
    return path


def test_lambda_params_is_the_params_cost_exactly():
    a = resolve(SearchConfig, {"lambda_params": 0.5})
    b = resolve(SearchConfig, {"cost": "params", "lambda_cost": 0.5})
    assert a == b
    ca, cb = regularizer_costs(a), regularizer_costs(b)
    assert all(torch.equal(ca[k], cb[k]) for k in ca)
    with pytest.raises(NaspError, match="given twice|contradict"):
        resolve(SearchConfig, {"lambda_params": 0.5, "lambda_cost": 0.1})


def test_latency_costs_come_from_the_table_at_each_edges_stride(tmp_path):
    cfg = resolve(SearchConfig, {"cost": "latency", "cost_table": str(fake_table(tmp_path)),
                                 "lambda_cost": 1.0})
    costs = regularizer_costs(cfg)
    reduce = get_space("nasp-7").cells["reduce"]
    strided = [e for e in range(reduce.num_edges) if reduce.stride(e) == 2]
    # the raw reduce costs are 10x at stride 2; normalised by the mean row sum
    raw = torch.tensor([[(k + 1) * (10 if reduce.stride(e) == 2 else 1) for k in range(7)]
                        for e in range(14)], dtype=torch.float64)
    torch.testing.assert_close(costs["reduce"].double(), raw / raw.sum(1).mean(),
                               rtol=1e-6, atol=0)
    assert 4 not in strided and costs["reduce"][strided[0], 0] == pytest.approx(
        10 * costs["reduce"][4, 0])
    # two normal cells: twice one position's cost, which normalisation cancels
    normal = torch.arange(1.0, 8.0, dtype=torch.float64)
    torch.testing.assert_close(costs["normal"][0].double(), normal / normal.sum(),
                               rtol=1e-6, atol=0)


def test_the_latency_penalty_gradient_is_its_closed_form(tmp_path):
    cfg = resolve(SearchConfig, {"cost": "latency", "cost_table": str(fake_table(tmp_path)),
                                 "lambda_cost": 0.3})
    costs = regularizer_costs(cfg)
    w = {k: torch.rand(14, 7, dtype=torch.float64, requires_grad=True) for k in costs}
    grads = torch.autograd.grad(cost_penalty(w, costs, 0.3), list(w.values()))
    for (k, wk), g in zip(w.items(), grads):
        torch.testing.assert_close(g, 2 * 0.3 * wk.detach() * costs[k].double())


def test_a_table_of_another_space_or_no_table_is_refused(tmp_path):
    with pytest.raises(NaspError, match="needs --cost-table"):
        resolve(SearchConfig, {"cost": "latency", "lambda_cost": 1.0})
    cfg = resolve(SearchConfig, {"space": "darts", "cost": "latency", "lambda_cost": 1.0,
                                 "cost_table": str(fake_table(tmp_path))})
    with pytest.raises(NaspError, match="space 'nasp-7'"):
        regularizer_costs(cfg)


def test_latency_regularizer_steers_a_search_to_cheaper_ops(tmp_path, monkeypatch):
    """λ > 0 with a latency table that makes high op indices dear: the selected ops get
    cheaper than without it (same seed, same data)."""
    use_synthetic_task(monkeypatch)
    table = str(fake_table(tmp_path))
    costs = regularizer_costs(resolve(SearchConfig, {"cost": "latency", "cost_table": table,
                                                     "lambda_cost": 1.0}))

    def latency(res):
        return sum(float((res.strategy.A_bar[k] * costs[k]).sum()) for k in costs)

    free = run_search(tiny_cfg(epochs=2, arch_lr=0.05), progress=False)
    dear = run_search(tiny_cfg(epochs=2, arch_lr=0.05, cost="latency", cost_table=table,
                               lambda_cost=5.0), progress=False)
    assert latency(dear) < latency(free)


LAM = 0.7


def _penalty_gradient(name: str, strategy, costs: dict, lam: float) -> list[torch.Tensor]:
    """∇ of R = λ Σ c ⊙ W² with respect to what each strategy steps, in closed form: NASP and
    the proximal baselines charge Ā and step it (2λ c ⊙ Ā); DARTS charges p = softmax(α) and
    ASAP Φ = softmax(α / T), both stepping α: (2λ / T) p ⊙ (c ⊙ p − Σ_k c_k p_k²)."""
    grads = []
    for cell, c in costs.items():
        c = c.double()
        if name in ("nasp", "pa", "pa-lazy"):
            grads.append(2 * lam * c * strategy.A_bar[cell].double())
            continue
        t = strategy.temperature if name == "asap" else 1.0
        p = (strategy.arch[cell].detach().double() / t).softmax(dim=-1)
        grads.append(2 * lam / t * p * (c * p - (c * p * p).sum(dim=-1, keepdim=True)))
    return grads


def _arch_gradient(name: str, lam: float, costs: dict) -> tuple[list[torch.Tensor], list]:
    """The architecture gradient one step of ``name`` applies (what it hands ``ctx.reduce``
    last, just before its optimizer step), and the closed-form penalty gradient at that step."""
    import dataclasses

    from helpers import context, make_strategy, tiny_batch, tiny_net

    net = tiny_net()  # the same weights for every call: seeded
    strategy = make_strategy(name, seed=0, lambda_cost=lam, costs=costs, arch_lr=0.01)
    handed: list[list[torch.Tensor]] = []
    ctx = dataclasses.replace(context(net), reduce=lambda grads: handed.append(
        [g.detach().clone() for g in grads]))
    expected = _penalty_gradient(name, strategy, costs, lam)
    strategy.arch_step(ctx, tiny_batch(seed=1), tiny_batch(seed=2))
    return handed[-1], expected


@pytest.mark.parametrize("name", ["darts", "darts2", "pa", "pa-lazy", "asap", "nasp"])
def test_every_strategy_adds_the_regularizer_gradient_to_its_arch_step(name):
    """λ > 0 changes the architecture gradient a strategy applies by exactly the closed-form
    gradient of the cost penalty on the weighting it charges, at one step on a tiny space."""
    costs = regularizer_costs(resolve(SearchConfig, {"space": "nasp-7", "lambda_params": LAM}))
    free, _ = _arch_gradient(name, 0.0, costs)
    charged, expected = _arch_gradient(name, LAM, costs)
    for g0, g1, want in zip(free, charged, expected, strict=True):
        assert float(want.abs().max()) > 1e-3  # the penalty is large enough to be seen
        torch.testing.assert_close(g1.double() - g0.double(), want, rtol=1e-6, atol=1e-9)
