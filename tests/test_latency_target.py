"""--latency-target: the strategies hold their architecture within budget by themselves."""

import json

import numpy as np
import pytest
import torch

import nasp
from nasp.configs import SearchConfig, resolve
from nasp.cost_model import CostModel, connected, load_cost_model, useful_edges
from nasp.loops.search import run_search
from nasp.nb201.strings import OP_NAMES
from nasp.spaces import get_space
from nasp.strategies.budget import LatencyBudget, project

TINY = dict(space="nb201", preset="quick", max_train_samples=128, channels=4, layers=3,
            batch_size=16, max_steps_per_epoch=3, epochs=3, device="cpu")
TARGET = 4.0  # ms: one conv 3x3 and a few cheap ops at most


def toy_model(dead_ends="cost"):
    cost = np.zeros((6, 5))
    for op, ms in (("skip_connect", 0.1), ("nor_conv_1x1", 1.0), ("nor_conv_3x3", 2.5),
                   ("avg_pool_3x3", 0.6)):
        cost[:, OP_NAMES.index(op)] = ms
    return CostModel("nb201", {"cell": cost}, 1.0, dead_ends, fit={"source": "test"})


@pytest.fixture
def table(tmp_path):
    path = tmp_path / "toy-costs.json"
    toy_model().save(path)
    return str(path)


@pytest.mark.parametrize("strategy", ["nasp", "pa-lazy", "darts", "asap"])
def test_the_search_ends_within_its_target(tmp_path, table, strategy):
    free = nasp.search(out=False, strategy=strategy, progress=False, **TINY)
    model = load_cost_model(table)
    assert model.predict(free.genotype) > TARGET  # without the budget this search is over it
    res = nasp.search(out=str(tmp_path / "run"), strategy=strategy, progress=False,
                      cost_table=table, latency_target=TARGET, target_device="fpga", **TINY)
    assert model.predict(res.genotype) <= TARGET
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    assert result["latency_met"] is True and result["latency_pred_ms"] <= TARGET
    assert result["target_device"] == "fpga" and result["nb201_latency_ms"] > 0
    for m in res.metrics:  # every epoch's held cell is within budget, and measured on fpga
        assert m["latency_pred_ms"] <= TARGET and "nb201_latency_ms" in m
    if strategy in ("darts", "asap"):  # their λ rose while the derived cell was over budget
        assert max(m["latency_lambda"] for m in res.metrics) > 0
    else:  # NASP's family: the projection acts, λ stays at its start
        assert all(m["latency_lambda"] == 0 for m in res.metrics)


def test_the_projection_is_the_best_cell_within_budget():
    cells = dict(get_space("nb201").cells)
    budget = LatencyBudget(toy_model(), TARGET)
    rng = np.random.default_rng(0)
    a = rng.random((6, 5))
    sel = {"cell": tuple(int(k) for k in a.argmax(1))}
    got = project(budget, {"cell": a}, sel, cells)["cell"]
    import itertools

    cell = cells["cell"]

    def weight(s):  # ops off every input-to-output path weigh what none weighs
        useful = useful_edges(s, cell)
        return sum(a[e, k] if e in useful else a[e, 0] for e, k in enumerate(s))

    best = max((s for s in itertools.product(range(5), repeat=6)
                if budget.predict({"cell": s}, cells) <= TARGET and connected(s, cell)),
               key=weight)
    assert got == best
    # within budget already: left alone
    cheap = {"cell": (0, 1, 0, 1, 0, 4)}
    assert project(budget, {"cell": a}, cheap, cells) == cheap


def test_greedy_projection_on_a_darts_space():
    """Spaces too large to list get the greedy projection: still within budget."""
    cells = dict(get_space("nasp-7").cells)
    cost = {name: np.tile(np.arange(1.0, c.num_ops + 1.0), (c.num_edges, 1))
            for name, c in cells.items()}
    budget = LatencyBudget(CostModel("nasp-7", cost, 5.0, "cost"), 5.0 + 2 * 8 * 2.5)
    from nasp.strategies.discretize import select

    rng = np.random.default_rng(0)
    values = {name: rng.random((c.num_edges, c.num_ops)) for name, c in cells.items()}
    sel = {name: select(values[name], c) for name, c in cells.items()}
    assert budget.predict(sel, cells) > budget.aim_ms
    got = project(budget, values, sel, cells)
    assert budget.predict(got, cells) <= budget.aim_ms


@pytest.mark.parametrize("strategy", ["darts", "nasp"])
def test_resume_continues_the_budget_exactly(tmp_path, table, strategy):
    """DARTS: λ of the dual ascent; NASP: the projection that binds after the warm-up."""
    opts = dict(TINY, strategy=strategy, cost_table=table, latency_target=TARGET)
    straight = nasp.search(out=str(tmp_path / "a"), progress=False, **opts)

    class Kill(Exception):
        pass

    def kill(epoch, record):  # the resumed epoch is the first the projection binds (NASP)
        if epoch == 1:
            raise Kill

    cfg = resolve(SearchConfig, dict(opts, out=str(tmp_path / "b")))
    with pytest.raises(Kill):
        run_search(cfg, tmp_path / "b", progress=False, on_epoch_end=kill)
    resumed = nasp.resume(tmp_path / "b", progress=False)
    a, b = straight.strategy.state_dict()["arch"], resumed.strategy.state_dict()["arch"]
    assert (a["budget"]["lam"] > 0) == (strategy == "darts") and a["budget"] == b["budget"]
    assert all(torch.equal(a["tensors"][k], b["tensors"][k]) for k in a["tensors"])
    assert straight.genotype == resumed.genotype
    assert [m["latency_lambda"] for m in straight.metrics] == \
        [m["latency_lambda"] for m in resumed.metrics]


def test_a_margin_aims_below_the_target(tmp_path, table):
    res = nasp.search(out=False, strategy="nasp", progress=False, cost_table=table,
                      latency_target=TARGET, latency_margin=0.25, **TINY)
    assert res.result["latency_aim_ms"] == pytest.approx(TARGET / 1.25)
    assert res.result["latency_pred_ms"] <= TARGET / 1.25


def test_latency_plot_and_report(tmp_path, table):
    from nasp.cli import main

    run = tmp_path / "run"
    nasp.search(out=str(run), strategy="nasp", progress=False, cost_table=table,
                latency_target=TARGET, target_device="fpga", **TINY)
    assert main(["plot", str(run), "--kind", "latency", "-o", str(tmp_path / "p")]) == 0
    svg = (tmp_path / "p" / "latency-vs-accuracy.svg").read_text()
    assert "measured latency on fpga (ms)" in svg and "budget 4 ms" in svg
    assert "Pareto front" in svg and "<image" in svg  # the 15,625 cells as one raster
    assert main(["report", str(run), "-o", str(tmp_path / "r.html")]) == 0
    assert "measured latency on fpga (ms)" in (tmp_path / "r.html").read_text()
    plain = nasp.search(out=str(tmp_path / "plain"), strategy="nasp", progress=False, **TINY)
    assert plain.run_dir is not None
    assert main(["plot", str(tmp_path / "plain"), "--kind", "latency",
                 "-o", str(tmp_path / "q")]) == 2


def test_compare_tables_and_nb201_plot_show_the_measured_latency(tmp_path, table):
    from nasp.cli import main

    argv = ["compare", "--strategies", "nasp,darts", "--seeds", "0", "--out", str(tmp_path),
            "--score-epochs", "1", "--quiet", "--in-process", "--target-device", "fpga",
            "--cost-table", table, "--latency-target", str(TARGET)]
    for k, v in {**TINY, "epochs": 2}.items():
        argv += [f"--{k.replace('_', '-')}", str(v)]
    assert main(argv) == 0
    md = (tmp_path / "comparison.md").read_text()
    assert "NB201 latency on fpga (ms)" in md and "target met (predicted)" in md
    assert "| 1/1 |" in md
    assert main(["plot", str(tmp_path), "--kind", "nb201", "-o", str(tmp_path / "p")]) == 0
    assert "measured latency on fpga (ms)" in (tmp_path / "p" / "nb201-vs-epoch.svg").read_text()
