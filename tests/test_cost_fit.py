"""The additive latency model: dead ends, the least-squares fit, and how it is judged."""

import itertools

import numpy as np
import pytest

from nasp.cli import main
from nasp.cost_fit import (
    evaluate,
    fit,
    kendall_tau,
    nb201_madds,
    nb201_selection,
    predict_many,
    read_measurements,
)
from nasp.cost_model import CostModel, live_edges, load_cost_model
from nasp.errors import NaspError
from nasp.nb201.latency import latency_table
from nasp.spaces import get_space
from nasp.spaces.nb201 import NB201_CELL

CELLS = dict(get_space("nb201").cells)
OPS = {op: k for k, op in enumerate(NB201_CELL.ops)}


def sel(text):
    return nb201_selection(text)["cell"]


def test_dead_ends_on_hand_made_cells():
    # node 1's only way out is none: its conv (edge 0) is a dead end, the rest run
    dead = sel("|nor_conv_3x3~0|+|nor_conv_1x1~0|none~1|+|skip_connect~0|none~1|nor_conv_3x3~2|")
    assert live_edges(dead, NB201_CELL, "free") == [1, 3, 5]
    assert live_edges(dead, NB201_CELL, "cost") == [0, 1, 3, 5]
    # a dead end two steps back: node 2 reaches nothing, so node 1 (feeding only node 2) too
    chain = sel("|nor_conv_3x3~0|+|nor_conv_1x1~0|avg_pool_3x3~1|+|skip_connect~0|none~1|"
                "none~2|")
    assert live_edges(chain, NB201_CELL, "free") == [3]
    # every edge reaches node 3: nothing is dead
    full = sel("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|"
               "nor_conv_3x3~1|nor_conv_3x3~2|")
    assert live_edges(full, NB201_CELL, "free") == list(range(6))
    # prediction: a dead end adds nothing under "free", its cost under "cost"
    cost = np.zeros((6, 5))
    cost[:, OPS["nor_conv_3x3"]] = 3.0
    cost[:, OPS["nor_conv_1x1"]] = 1.0
    cost[:, OPS["skip_connect"]] = 0.1
    free = CostModel("nb201", {"cell": cost}, 2.0, "free")
    assert free.predict_selection({"cell": dead}) == pytest.approx(2.0 + 1.0 + 0.1 + 3.0)
    charged = CostModel("nb201", {"cell": cost}, 2.0, "cost")
    assert charged.predict_selection({"cell": dead}) == pytest.approx(2.0 + 4.1 + 3.0)


def _all_nb201():
    return [{"cell": s} for s in itertools.product(range(5), repeat=6)]


@pytest.mark.parametrize("rule", ["cost", "free"])
def test_the_fit_recovers_a_known_additive_table_exactly(rule):
    rng = np.random.default_rng(3)
    truth = rng.uniform(0.1, 3.0, size=(6, 5))
    truth[:, OPS["none"]] = 0.0
    model = CostModel("nb201", {"cell": truth}, 1.7, rule)
    archs = _all_nb201()
    y = predict_many(model, archs, CELLS)
    fitted = fit(archs, y, "nb201", CELLS, dead_ends="auto").model
    assert fitted.dead_ends == rule  # the rule that made the data is the one chosen
    np.testing.assert_allclose(fitted.cost["cell"], truth, atol=1e-8)
    assert fitted.constant == pytest.approx(1.7, abs=1e-8)


@pytest.mark.parametrize("device", ["eyeriss", "fpga"])
def test_the_asic_and_fpga_columns_are_additive(device):
    """R² on every cell of the table: 1.000000 when every op costs, less with dead ends free."""
    t = latency_table()
    archs = [{"cell": sel(a)} for a in t.archs]
    y = t.column(device)
    exact = fit(archs, y, "nb201", CELLS, dead_ends="cost")
    assert exact.r2 > 1 - 1e-8
    assert np.abs(predict_many(exact.model, archs, CELLS) - y).max() < 5e-4  # 5 digits kept
    pruned = fit(archs, y, "nb201", CELLS, dead_ends="free")
    assert pruned.r2 < 0.95


def test_few_cells_share_an_op_cost_between_positions():
    """Ten cells cannot fix 24 entries: the fit shares costs between positions instead of
    inventing differences, and still ranks unseen cells of an additive device exactly."""
    t = latency_table()
    rng = np.random.default_rng(0)
    idx = rng.choice(len(t), 10, replace=False)
    archs = [{"cell": sel(t.archs[i])} for i in idx]
    result = fit(archs, t.column("eyeriss")[idx], "nb201", CELLS)
    assert result.rho > 0
    rest = rng.choice(len(t), 500, replace=False)
    pred = predict_many(result.model, [{"cell": sel(t.archs[i])} for i in rest], CELLS)
    assert np.abs(pred / t.column("eyeriss")[rest] - 1).max() < 1e-3


def test_kendall_tau_with_ties():
    rng = np.random.default_rng(1)
    a = rng.integers(0, 4, 60)
    b = a + rng.integers(0, 3, 60)
    n, s = len(a), 0.0
    for i in range(n):
        for j in range(i + 1, n):
            s += np.sign(a[i] - a[j]) * np.sign(b[i] - b[j])

    def ties(v):
        _, c = np.unique(v, return_counts=True)
        return (c * (c - 1) / 2).sum()

    pairs = n * (n - 1) / 2
    assert kendall_tau(a, b) == pytest.approx(s / np.sqrt((pairs - ties(a)) * (pairs - ties(b))))
    assert kendall_tau([1, 2, 3], [3, 2, 1]) == pytest.approx(-1.0)
    ev = evaluate([1, 2, 4], [1, 2, 5], [1, 1, 2])
    assert ev["kendall_tau"] == pytest.approx(1.0) and ev["mape_pct"] == pytest.approx(20 / 3)


def test_madds_are_what_nasp_info_counts():
    from nasp.genotype import get_genotype
    from nasp.models.cnn import build_eval_model, count_flops

    t = latency_table()
    archs = [t.archs[i] for i in (0, 1, 25, 6111, 15000)]
    for arch, m in zip(archs, nb201_madds(archs)):
        assert m == count_flops(build_eval_model(get_genotype(arch), 3, 10, 32), (3, 32, 32))


def test_costs_fit_from_the_table_and_from_a_csv(tmp_path, capsys):
    out = tmp_path / "fit.json"
    assert main(["costs", "fit", "--device-latency", "gold_6226", "--samples", "30",
                 "--seed", "1", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "the other 15595 cells" in text and "Kendall τ" in text and "multiply-adds" in text
    model = load_cost_model(out)
    assert model.fit["samples"] == 30 and model.fit["heldout"]["kendall_tau"] > 0.7
    assert model.fit["heldout"]["kendall_tau"] > model.fit["heldout"]["flops_kendall_tau"]
    # a CSV of the user's own measurements (here: 40 cells of the fpga column)
    t = latency_table()
    rows = ["genotype,latency_ms"] + [f"{t.archs[i]},{t.column('fpga')[i]}"
                                      for i in range(0, 4000, 100)]
    csv = tmp_path / "mine.csv"
    csv.write_text("\n".join(rows) + "\n")
    assert main(["costs", "fit", "--csv", str(csv), "-o", str(tmp_path / "mine.json")]) == 0
    text = capsys.readouterr().out
    assert "left out of the fit in turn" in text
    mine = load_cost_model(tmp_path / "mine.json")
    assert mine.space == "nb201" and mine.fit["leave_one_out"]["mape_pct"] < 0.1


def test_measurements_file_rows(tmp_path):
    good = tmp_path / "ok.csv"
    good.write_text("# my phone\n"
                    "|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|,3.5\n"
                    "|nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|,7\n")
    genotypes, ms = read_measurements(good)
    assert len(genotypes) == 2 and ms == [3.5, 7.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("cell,ms\n|none~0|+|none~0|none~1|+|none~0|none~1|skip_connect~2|,fast\n")
    with pytest.raises(NaspError, match="line 2"):
        read_measurements(bad)
