"""NASP's core: discretization, the lean architecture gradient, clipping, the weight step."""

import numpy as np
import pytest
import torch

from helpers import context, tiny_batch, tiny_net
from nasp.errors import NaspError
from nasp.spaces import get_space
from nasp.strategies import get_strategy
from nasp.strategies.discretize import (
    discretize,
    genotype_to_selection,
    select,
    selection_to_genotype,
)
from nasp.strategies.regularizer import op_costs, size_penalty
from nasp.supernet.weighting import CellWeighting, dense_plan

CELL = get_space("nasp-7").cells["normal"]


def test_discretize_argmax_and_top2_per_node():
    a = torch.full((14, 7), 0.1)
    # node 0 (edges 0,1): both kept; node 1 (edges 2,3,4): edges 2 and 4 strongest
    a[0, 3] = 0.9
    a[1, 5] = 0.8
    a[2, 1], a[3, 2], a[4, 6] = 0.7, 0.2, 0.6
    bar, sel = discretize(a, CELL)
    assert sel[0] == 3 and sel[1] == 5
    assert sel[2] == 1 and sel[3] == -1 and sel[4] == 6
    assert bar.shape == (14, 7)
    assert torch.equal(bar[3], torch.zeros(7))  # pruned edge: zero row
    assert torch.equal(bar.sum(1)[[0, 1, 2, 4]], torch.ones(4))  # kept: one-hot
    for node_edges in CELL.node_edges:  # exactly two kept edges per node
        assert sum(sel[e] >= 0 for e in node_edges) == 2


def test_discretize_ties_go_to_first_op_and_first_edge():
    sel = select(np.full((14, 7), 0.5), CELL)
    assert all(s in (0, -1) for s in sel)
    # node 1 (edges 2,3,4) keeps the two earliest edges on a tie
    assert [sel[e] >= 0 for e in (2, 3, 4)] == [True, True, False]


def test_genotype_is_exactly_the_selection():
    g = torch.Generator().manual_seed(3)
    a = torch.rand(14, 7, generator=g)
    _, sel = discretize(a, CELL)
    geno = selection_to_genotype({"normal": sel, "reduce": sel}, get_space("nasp-7").cells)
    back = genotype_to_selection(geno, get_space("nasp-7").cells)
    assert back["normal"] == sel


@pytest.mark.parametrize("space", ["nasp-7", "nasp-12", "darts"])
def test_lean_arch_gradient_equals_full_supernet_gradient(space):
    net = tiny_net(space)
    strategy = get_strategy("nasp")(get_space(space), "cpu", seed=1, init_noise=0.2)
    strategy.A = {k: v.double() for k, v in strategy.A.items()}
    strategy._refresh()
    ctx = context(net)
    batch = tiny_batch()
    lean = strategy.arch_gradient(ctx, batch)
    # reference: every op of every edge with a full autograd graph, weighted by Ā
    bar = {k: v.clone().requires_grad_(True) for k, v in strategy.bar.items()}
    full_w = {k: CellWeighting(b, dense_plan(*b.shape)) for k, b in bar.items()}
    full = torch.autograd.grad(ctx.loss(batch, full_w), list(bar.values()))
    for (name, g_lean), g_full in zip(lean.items(), full):
        torch.testing.assert_close(g_lean, g_full, rtol=1e-9, atol=1e-12)
        # pruned edges get a gradient too, so they can win later
        pruned = [e for e, s in enumerate(strategy.selection[name]) if s < 0]
        assert pruned and g_lean[pruned].abs().sum() > 0
    # and no weight gradient was computed
    assert all(p.grad is None for p in net.parameters())


def test_arch_step_clips_to_unit_box_and_updates_selection():
    net = tiny_net()
    strategy = get_strategy("nasp")(get_space("nasp-7"), "cpu", seed=0, arch_lr=0.5)
    strategy.A = {k: v.double() for k, v in strategy.A.items()}
    strategy.optimizer = torch.optim.Adam(list(strategy.A.values()), lr=0.5)
    strategy._refresh()
    ctx = context(net)
    before = {k: v.clone() for k, v in strategy.A.items()}
    for i in range(3):
        strategy.arch_step(ctx, None, tiny_batch(seed=i))
    for name, a in strategy.A.items():
        assert a.min() >= 0 and a.max() <= 1
        assert not torch.equal(a, before[name])
        assert ((a == 0) | (a == 1)).any()  # lr 0.5 pushes some entries onto the box
        bar, sel = discretize(a, strategy.cells[name])
        assert torch.equal(strategy.bar[name], bar) and strategy.selection[name] == sel


def test_weight_step_changes_only_selected_ops():
    net = tiny_net()
    strategy = get_strategy("nasp")(get_space("nasp-7"), "cpu", seed=2, init_noise=0.3)
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=0.1, momentum=0.9, weight_decay=3e-4)
    before = {n: p.detach().clone() for n, p in net.named_parameters()}
    for i in range(2):  # two steps: momentum and weight decay would move idle ops on step 2
        opt.zero_grad(set_to_none=True)
        x, y = tiny_batch(seed=i)
        torch.nn.functional.cross_entropy(net(x, strategy.weighting()), y).backward()
        opt.step()
    changed = {n for n, p in net.named_parameters() if not torch.equal(p, before[n])}
    for ci, cell in enumerate(net.cells):
        sel = strategy.selection[cell.cell_type]
        for e, mixed in enumerate(cell.edges):
            for k in range(len(mixed.ops)):
                names = {f"cells.{ci}.edges.{e}.ops.{k}.{n}" for n, _ in
                         mixed.ops[k].named_parameters()}
                if not names:
                    continue
                if sel[e] == k:
                    assert names <= changed, (ci, e, k)
                else:
                    assert not names & changed, (ci, e, k)


def test_regularizer_gradient_matches_closed_form():
    cells = get_space("nasp-12").cells
    costs = {k: op_costs(c) for k, c in cells.items()}
    assert costs["normal"][cells["normal"].ops.index("conv_3x3")] > 0
    assert torch.equal(costs["reduce"], torch.zeros(5))  # pools and skip have no parameters
    w = {k: torch.rand(14, c.num_ops, dtype=torch.float64, requires_grad=True)
         for k, c in cells.items()}
    lam = 0.3
    grads = torch.autograd.grad(size_penalty(w, costs, lam), list(w.values()))
    for (k, wk), g in zip(w.items(), grads):
        torch.testing.assert_close(g, 2 * lam * wk.detach() * costs[k].double())
    assert size_penalty(w, costs, 0.0) is None


def test_regularizer_pushes_nasp_towards_smaller_ops():
    net = tiny_net("nasp-12")
    space = get_space("nasp-12")
    sizes = []
    for lam in (0.0, 50.0):
        s = get_strategy("nasp")(space, "cpu", seed=0, lambda_params=lam, arch_lr=0.05)
        for i in range(15):
            s.arch_step(context(net.float()), None, tiny_batch(dtype=torch.float32, seed=i))
        a = s.A["normal"]
        sizes.append(float((a * op_costs(space.cells["normal"])).sum()))
    assert sizes[1] < sizes[0]


@pytest.mark.parametrize("name, known", [("nasp", "init, init_noise"),
                                         ("darts", "takes no --strategy-options"),
                                         ("darts2", "takes no --strategy-options")])
def test_strategy_options_typo_is_an_error(name, known):
    """A typo in --strategy-options must not silently run with the default."""
    with pytest.raises(NaspError, match="unknown option.*init_nosie") as info:
        get_strategy(name)(get_space("nasp-7"), "cpu", init_nosie=0.1)
    assert known in info.value.hint
