"""The baselines on the tiny supernet: PA, PA-lazy, ASAP, random search, fixed genotype."""

import json

import numpy as np
import pytest
import torch

from helpers import context, make_strategy, tiny_batch, tiny_net
from nasp.errors import NaspError
from nasp.genotype import GENOTYPES, Genotype
from nasp.spaces import get_space
from nasp.strategies.discretize import discretize, selection_to_genotype
from nasp.strategies.random_search import budget
from nasp.supernet.weighting import RUN, SKIP

F32 = torch.float32


def batch(seed=0):
    return tiny_batch(dtype=F32, seed=seed)


def assert_valid_discretization(bar, sel, cell):
    """Every row one-hot (kept edge) or zero (pruned edge), ``keep`` kept edges per node."""
    sums = bar.sum(dim=1)
    assert bool(((bar == 0) | (bar == 1)).all())
    assert bool(((sums == 0) | (sums == 1)).all())
    for node_edges in cell.node_edges:
        assert sum(int(sums[e]) for e in node_edges) == cell.keep
        assert sum(sel[e] >= 0 for e in node_edges) == cell.keep
    for e, k in enumerate(sel):
        assert (k < 0 and sums[e] == 0) or (k >= 0 and bar[e, k] == 1)


def op_calls(net):
    """Forward-call counters for every (cell type, edge, op) module of a search network."""
    calls = {}
    handles = []
    for cell in net.cells:
        for e, mixed in enumerate(cell.edges):
            for k, op in enumerate(mixed.ops):
                key = (cell.cell_type, e, k)
                calls[key] = 0

                def hook(module, inputs, output, key=key):
                    calls[key] += 1

                handles.append(op.register_forward_hook(hook))
    return calls, handles


class Boom(torch.nn.Module):
    def forward(self, x):
        raise AssertionError("a pruned op was executed")


# --- PA (standard proximal step, eq. 9) ---------------------------------------------------------
def test_pa_keeps_A_itself_discrete_through_steps():
    net = tiny_net(dtype=F32)
    s = make_strategy("pa", "nasp-7", dtype=F32, seed=0, arch_lr=10.0)
    start = dict(s.selection)
    for name, cell in s.cells.items():
        assert torch.equal(s.arch[name], s.A_bar[name])
        assert_valid_discretization(s.arch[name], s.selection[name], cell)
    for i in range(3):
        s.arch_step(context(net), None, batch(i))
        for name, cell in s.cells.items():
            assert torch.equal(s.arch[name], s.A_bar[name])  # A ∈ C: nothing continuous is kept
            assert_valid_discretization(s.arch[name], s.selection[name], cell)
    assert s.selection != start  # a large plain step does move the architecture


def test_pa_with_a_small_step_keeps_its_seeded_architecture():
    """The paper's point: from a one-hot A a small step never reaches another vertex."""
    net = tiny_net(dtype=F32)
    for step in ("sgd", "adam"):
        s = make_strategy("pa", "nasp-7", dtype=F32, seed=0, arch_lr=3e-3, step=step)
        start = dict(s.selection)
        for i in range(3):
            s.arch_step(context(net), None, batch(i))
        assert s.selection == start


def test_pa_initial_architecture_depends_on_the_seed():
    a = make_strategy("pa", "nasp-7", dtype=F32, seed=0).selection
    b = make_strategy("pa", "nasp-7", dtype=F32, seed=0).selection
    c = make_strategy("pa", "nasp-7", dtype=F32, seed=1).selection
    assert a == b and a != c


# --- PA with the lazy proximal step (eq. 10) ----------------------------------------------------
def test_pa_lazy_leaves_A_unclipped_and_A_bar_a_valid_discretization():
    net = tiny_net(dtype=F32)
    s = make_strategy("pa-lazy", "nasp-7", dtype=F32, seed=0, arch_lr=0.5)
    assert isinstance(s.arch.optimizer, torch.optim.Adam)
    for i in range(3):
        s.arch_step(context(net), None, batch(i))
    values = torch.cat([a.flatten() for a in s.arch.parameters()])
    assert bool((values < 0).any()) and bool((values > 1).any())  # NASP would clip these
    for name, cell in s.cells.items():
        bar, sel = discretize(s.arch[name], cell)
        assert torch.equal(s.A_bar[name], bar) and s.selection[name] == sel
        assert_valid_discretization(s.A_bar[name], sel, cell)


def test_pa_and_nasp_differ_only_in_the_box_for_one_step():
    """Same seed, same batch: one Adam step of pa-lazy equals NASP's before clipping."""
    net = tiny_net(dtype=F32)
    lazy = make_strategy("pa-lazy", "nasp-7", dtype=F32, seed=3, arch_lr=0.5)
    nasp = make_strategy("nasp", "nasp-7", dtype=F32, seed=3, arch_lr=0.5)
    lazy.arch_step(context(net), None, batch(0))
    nasp.arch_step(context(net), None, batch(0))
    for name in lazy.cells:
        torch.testing.assert_close(lazy.arch[name].clamp(0, 1), nasp.arch[name])


@pytest.mark.parametrize("name", ["pa", "pa-lazy"])
def test_pa_rejects_bad_options(name):
    with pytest.raises(NaspError, match="unknown option.*stpe"):
        make_strategy(name, "nasp-7", dtype=F32, stpe="sgd")
    with pytest.raises(NaspError, match="unknown architecture step"):
        make_strategy(name, "nasp-7", dtype=F32, step="rmsprop")


# --- ASAP ---------------------------------------------------------------------------------------
def alive_ops(s):
    return int(sum(int(a.sum()) for a in s.alive.values()))


def asap(space="nasp-7", **kw):
    return make_strategy("asap", space, dtype=F32, seed=0, **kw)


def test_asap_schedule_defaults_reach_t_final_at_the_last_epoch():
    s = asap(epochs=10)
    s.start_epoch(0)
    assert s.temperature == pytest.approx(1.0) and s.threshold == pytest.approx(0.05)
    s.start_epoch(9)
    assert s.temperature == pytest.approx(1e-3)
    assert s.threshold == pytest.approx(0.05 * 0.9 ** 9)
    s = asap(epochs=10, t0=5.0, gamma=0.9)
    s.start_epoch(2)
    assert s.temperature == pytest.approx(5.0 * 0.81)


def test_asap_weights_are_an_annealed_softmax_over_alive_ops():
    s = asap(epochs=4, init_scale=1.0)
    s.alive["normal"][0, :3] = False
    s.restored()
    for epoch in (0, 2):
        s.start_epoch(epoch)
        w = s.weighting()["normal"].weights
        a = s.arch["normal"]
        torch.testing.assert_close(w[0, 3:], (a[0, 3:] / s.temperature).softmax(-1))
        assert torch.equal(w[0, :3], torch.zeros(3))
        torch.testing.assert_close(w.sum(1), torch.ones(14))


def test_asap_pruned_ops_are_never_executed():
    net = tiny_net(dtype=F32)
    s = asap(epochs=4, arch_lr=0.1)
    s.start_epoch(1)
    for i in range(3):
        s.arch_step(context(net), None, batch(i))
    assert 0 < alive_ops(s) < 2 * 14 * 7  # some ops pruned, some alive
    # the plan skips exactly the pruned ops
    for name in s.cells:
        plan = np.array(s.weighting()[name].plan)
        assert np.array_equal(plan == RUN, s.alive[name].numpy())
        assert np.array_equal(plan == SKIP, ~s.alive[name].numpy())
    # replace every pruned op by one that raises: a weight step and an arch step still run
    for cell in net.cells:
        for e, mixed in enumerate(cell.edges):
            for k in range(len(mixed.ops)):
                if not s.alive[cell.cell_type][e, k]:
                    mixed.ops[k] = Boom()
    calls, handles = op_calls(net)
    x, y = batch(7)
    torch.nn.functional.cross_entropy(net(x, s.weighting()), y).backward()
    s.arch_step(context(net), None, batch(8))
    for h in handles:
        h.remove()
    assert all(n > 0 for (cell, e, k), n in calls.items() if s.alive[cell][e, k])


def test_asap_stops_at_one_op_per_edge_within_its_epochs():
    """4 epochs of 5 steps: T = 1, 0.1, 0.01, 0.001; pruning must be complete before the last
    epoch ends (the final forced anneal is not needed)."""
    net = tiny_net(dtype=F32)
    epochs, steps = 4, 5
    s = asap(epochs=epochs, arch_lr=0.05)
    alive, done_at = [], None
    for epoch in range(epochs):
        s.start_epoch(epoch)
        for i in range(steps):
            assert not s.finished()
            s.arch_step(context(net), None, batch(epoch * steps + i))
            alive.append(alive_ops(s))
            if s.finished():
                done_at = len(alive)
                break
        if done_at:
            break
        assert epoch + 1 < epochs, "not converged before the last epoch's end"
        s.end_epoch(epoch, {})
    assert done_at is not None and done_at <= epochs * steps
    assert alive == sorted(alive, reverse=True)  # pruning is for good
    assert alive[steps - 1] == 2 * 14 * 7  # nothing pruned at T = 1 with near-uniform weights
    for name in s.cells:
        assert (s.alive[name].sum(1) == 1).all()
        assert (np.array(s.weighting()[name].plan) == RUN).sum(1).tolist() == [1] * 14
    s.genotype().validate()


def test_asap_last_epoch_anneals_out_whatever_is_left():
    s = asap(epochs=3)
    s.start_epoch(2)
    record = {}
    s.end_epoch(2, record)
    assert s.finished() and record["asap_alive_ops"] == 28
    assert record["asap_temperature"] == pytest.approx(1e-3)


def test_asap_genotype_takes_surviving_ops_and_never_none():
    s = asap("darts", init_scale=1.0)
    cell = s.cells["normal"]
    none = cell.ops.index("none")
    with torch.no_grad():
        s.arch["normal"][:, none] = 10.0  # none strongest everywhere
    geno = s.genotype()
    geno.validate()
    assert all(op != "none" for op, _ in geno.normal)
    # an edge keeps its surviving op even when a pruned op has a larger α
    s.alive["normal"][0] = False
    s.alive["normal"][0, 2] = True
    with torch.no_grad():
        s.arch["normal"][0] = torch.arange(8.0)  # op 7 strongest, but pruned
    pairs = {j: op for op, j in s.genotype().normal[:2]}  # node 0: edges 0 and 1, both kept
    assert pairs[0] == cell.ops[2]


def test_asap_none_wins_an_edge_where_every_edge_is_kept():
    """NAS-Bench-201 keeps every edge, so ``none`` is a real op there (``final_ops``): a
    surviving ``none`` names its edge."""
    s = asap("nb201", init_scale=1.0)
    none = s.cells["cell"].ops.index("none")
    with torch.no_grad():
        s.arch["cell"][:, none] = 10.0
    s.prune(threshold=1.0)  # one op per edge: none everywhere
    assert [op for op, _ in s.genotype().cell] == ["none"] * 6

def test_asap_state_dict_round_trip():
    net = tiny_net(dtype=F32)
    s = asap(epochs=4, arch_lr=0.1)
    s.start_epoch(1)
    for i in range(2):
        s.arch_step(context(net), None, batch(i))
    t = asap(epochs=4, arch_lr=0.1)
    t.load_state_dict(s.state_dict())
    assert all(torch.equal(t.alive[k], s.alive[k]) for k in s.alive)
    assert t.genotype() == s.genotype() and t.temperature == s.temperature
    assert t.weighting()["normal"].plan == s.weighting()["normal"].plan


@pytest.mark.parametrize("opts, match", [
    ({"temperature": 1.0}, "unknown option.*temperature"),
    ({"gamma": 1.5}, "gamma"),
    ({"t0": -1.0}, "t0"),
    ({"theta0": 1.0}, "theta0"),
    ({"theta_decay": 0.0}, "theta_decay"),
    ({"t_final": 2.0}, "t_final"),
    ({"gamma": "fast"}, "gamma"),
])
def test_asap_rejects_bad_options(opts, match):
    with pytest.raises(NaspError, match=match):
        asap(**opts)


# --- random search ------------------------------------------------------------------------------
def rs(seed=0, space="nasp-7", epochs=10, **kw):
    return make_strategy("random", space, dtype=F32, seed=seed, epochs=epochs, **kw)


@pytest.mark.parametrize("space", ["nasp-7", "darts", "nasp-12", "rnn-darts"])
def test_random_samples_valid_genotypes_with_distinct_inputs(space):
    s = rs(space=space, epochs=20, candidates=20)
    for c in range(s.num_candidates):
        arch = s.candidates[c]
        geno = Genotype.from_dict(selection_to_genotype(arch, s.cells).to_dict())
        geno.validate()
        for name, cell in s.cells.items():
            for node_edges in cell.node_edges:
                inputs = [cell.edges[e][1] for e in node_edges if arch[name][e] >= 0]
                assert len(inputs) == len(set(inputs)) == cell.kept(0)
            assert all(cell.ops[k] != "none" for k in arch[name] if k >= 0)


def test_random_candidates_are_reproducible_and_seed_dependent():
    assert rs(0).candidates == rs(0).candidates
    assert rs(0).candidates != rs(1).candidates
    assert len({str(c) for c in rs(0, epochs=20, candidates=20).candidates}) == 20


def test_random_samples_cover_the_space_uniformly():
    s = rs(epochs=400, candidates=400)
    ops = np.zeros(7)
    inputs = np.zeros(5)  # node 3 of the normal cell: inputs 0..4, two distinct
    for arch in s.candidates:
        for e in get_space("nasp-7").cells["normal"].node_edges[3]:
            k = arch["normal"][e]
            if k >= 0:
                ops[k] += 1
                inputs[e - 9] += 1
    assert ops.min() > 0.6 * ops.mean() and inputs.min() > 0.7 * inputs.mean()


@pytest.mark.parametrize("epochs, opts, expected", [
    (10, {}, (5, 2)), (50, {}, (5, 10)), (7, {}, (7, 1)), (3, {}, (3, 1)), (1, {}, (1, 1)),
    (10, {"candidates": 3}, (3, 3)), (10, {"epochs_per_candidate": 4}, (2, 4)),
    (10, {"candidates": 2, "epochs_per_candidate": 5}, (2, 5)),
])
def test_random_budget_fits_the_run_epochs(epochs, opts, expected):
    assert budget(epochs, opts.get("candidates"), opts.get("epochs_per_candidate")) == expected


@pytest.mark.parametrize("opts, match", [
    ({"candidates": 11}, "does not fit"), ({"candidates": 4, "epochs_per_candidate": 3},
                                           "does not fit"),
    ({"candidates": 0}, "candidates"), ({"epochs_per_candidate": 1.5}, "epochs_per_candidate"),
    ({"samples": 3}, "unknown option.*samples"),
])
def test_random_rejects_bad_options(opts, match):
    with pytest.raises(NaspError, match=match):
        rs(epochs=10, **opts)


def test_random_trains_candidates_in_turn_and_keeps_the_best():
    s = rs(epochs=6, candidates=3)  # 2 epochs each
    accs = {1: 0.2, 3: 0.7, 5: 0.4}  # last epoch of each candidate
    resets, current = [], []
    for epoch in range(6):
        resets.append(s.start_epoch(epoch))
        current.append(s.current)
        plan = s.weighting()["normal"].plan
        assert [row.count(RUN) for row in plan] == [int(k >= 0) for k in
                                                    s.candidates[s.current]["normal"]]
        record = {"valid_acc": accs.get(epoch, 0.99)}
        s.end_epoch(epoch, record)
        assert record["candidate"] == s.current
        assert s.finished() == (epoch == 5)
    assert resets == [2, None, 2, None, 2, None]  # a fresh 2-epoch cosine per candidate
    assert current == [0, 0, 1, 1, 2, 2]
    assert s.best() == 1 and s.genotype_epoch() == 3
    assert s.genotype() == selection_to_genotype(s.candidates[1], s.cells)
    t = rs(epochs=6, candidates=3)
    t.load_state_dict(s.state_dict())
    assert t.best() == 1 and t.finished()


# --- fixed genotype -----------------------------------------------------------------------------
def test_fixed_runs_exactly_its_genotype():
    net = tiny_net(dtype=F32)
    geno = GENOTYPES["cnn"]["DARTS_V2"]
    s = make_strategy("fixed", "nasp-7", dtype=F32, genotype="DARTS_V2")
    assert s.genotype() == geno
    calls, handles = op_calls(net)
    x, y = batch()
    torch.nn.functional.cross_entropy(net(x, s.weighting()), y).backward()
    s.arch_step(context(net), None, batch(1))  # no-op
    for h in handles:
        h.remove()
    cells = get_space("nasp-7").cells
    expected = set()
    for name, cell in cells.items():
        for i, node_edges in enumerate(cell.node_edges):
            for op, j in geno.cells[name][2 * i:2 * i + 2]:
                expected.add((name, node_edges[j], cell.ops.index(op)))
    ran = {key for key, n in calls.items() if n > 0}
    assert ran == expected
    assert all(s.weighting()[name].weights is None for name in cells)


def test_fixed_accepts_dict_path_and_run_folder(tmp_path):
    geno = GENOTYPES["cnn"]["DARTS_V1"]
    (tmp_path / "genotype.json").write_text(json.dumps(geno.to_dict()))
    for value in (geno.to_dict(), str(tmp_path / "genotype.json"), str(tmp_path), "DARTS_V1"):
        s = make_strategy("fixed", "nasp-7", dtype=F32, genotype=value)
        assert s.genotype() == geno
        assert s.snapshot()["normal"]["A_bar"].sum() == 8


def test_fixed_sums_two_ops_on_one_input():
    pairs = [("skip_connect", 0), ("sep_conv_3x3", 0)] * 4
    geno = {"normal": pairs, "normal_concat": [2, 3, 4, 5], "reduce": pairs,
            "reduce_concat": [2, 3, 4, 5]}
    s = make_strategy("fixed", "nasp-7", dtype=F32, genotype=geno)
    assert [r.count(RUN) for r in s.plans["normal"][:2]] == [2, 0]
    net = tiny_net(dtype=F32)
    assert torch.isfinite(net(batch()[0], s.weighting())).all()


@pytest.mark.parametrize("opts, match", [
    ({}, "needs a genotype"),
    ({"genotype": "NASP_12"}, "conv_1x3_3x1"),  # not in the 7-op space
    ({"genotype": "NOPE"}, "unknown genotype"),
    ({"genotype": 3}, "type int"),
    ({"genotype": "DARTS_V2", "lr": 0.1}, "unknown option.*lr"),
])
def test_fixed_rejects_bad_options(opts, match):
    with pytest.raises(NaspError, match=match):
        make_strategy("fixed", "nasp-7", dtype=F32, **opts)
