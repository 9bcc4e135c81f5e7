"""Cost tables (``nasp profile``): positions, exact parameter and multiply-add sums,
``cost_matrices``, predictions, the timing helper and the CLI."""

from __future__ import annotations

import json
import random
import time

import pytest
import torch

from nasp import latency
from nasp.cli import main
from nasp.costs import (
    PassThrough,
    cost_matrices,
    load_table,
    network_layout,
    predict,
    profile,
    save_table,
)
from nasp.errors import NaspError
from nasp.genotype import GENOTYPES, cnn_genotype
from nasp.latency import time_calls
from nasp.models.cnn import build_eval_model, count_flops, count_params
from nasp.spaces import get_space

CPU = torch.device("cpu")
SHAPE, CLASSES = (1, 12, 12), 5


def _table(space="nasp-7", layers=6, channels=4):
    return profile(get_space(space), SHAPE, CLASSES, channels, layers, CPU, batch_size=2,
                   warmup=0, repeats=2)


@pytest.fixture(autouse=True)
def _fast_timing(monkeypatch):
    monkeypatch.setattr(latency, "MIN_REPEAT_S", 0.0)  # one call per repeat: fast tests


@pytest.fixture(scope="module")
def table7():
    return _table()


def random_genotype(space, seed):
    rng = random.Random(seed)
    cells = []
    for t in ("normal", "reduce"):
        spec = get_space(space).cells[t]
        ops = [spec.ops[k] for k in spec.final_ops]
        pairs = []
        for node in range(spec.nodes):
            for j in rng.sample(range(spec.inputs + node), 2):
                pairs.append((rng.choice(ops), j))
        cells.append(pairs)
    return cnn_genotype(*cells)


def test_positions_follow_the_evaluation_network():
    positions, skeleton = network_layout(get_space("nasp-7"), SHAPE, CLASSES, 4, 3)
    got = {(p["cell_type"], p["stride"], p["channels"], tuple(p["input_size"])): p["cells"]
           for p in positions}
    # 3 cells: reductions at 1 and 2; a reduction's input edges are strided at the input size
    assert got == {("normal", 1, 4, (12, 12)): [0],
                   ("reduce", 2, 8, (12, 12)): [1], ("reduce", 1, 8, (6, 6)): [1],
                   ("reduce", 2, 16, (6, 6)): [2], ("reduce", 1, 16, (3, 3)): [2]}
    # the skeleton: the same network with pass-throughs for ops, same output
    assert all(isinstance(op, PassThrough) for cell in skeleton.cells for op in cell.ops)
    assert [op.stride for op in skeleton.cells[1].ops] == [2] * 8  # all from cell inputs
    assert skeleton(torch.zeros(2, *SHAPE)).shape == (2, CLASSES)


@pytest.mark.parametrize("space,names", [("nasp-7", ["DARTS_V1", "DARTS_V2"]),
                                         ("nasp-12", ["NASP_12"])])
def test_table_sums_are_the_networks_parameters_and_multiply_adds(space, names):
    table = _table(space)
    genotypes = [GENOTYPES["cnn"][n] for n in names]
    genotypes += [random_genotype(space, seed) for seed in range(3)]
    for g in genotypes:
        net = build_eval_model(g, SHAPE[0], CLASSES, SHAPE[1:], channels=4, layers=6)
        assert predict(table, g, "params") == count_params(net)
        assert predict(table, g, "madds") == count_flops(net, SHAPE)
        assert predict(table, g, "latency") > 0


def _edge_index(space, t):
    return {edge: e for e, edge in enumerate(get_space(space).cells[t].edges)}


def test_cost_matrices_sum_over_the_cells_of_a_type(table7):
    space = get_space("nasp-7")
    for kind in ("params", "madds", "latency"):
        mats = cost_matrices(table7, space, kind)
        assert mats["normal"].shape == (14, 7) and mats["reduce"].shape == (14, 7)
        for g in [GENOTYPES["cnn"]["DARTS_V2"], random_genotype("nasp-7", 5)]:
            total = sum(p[{"latency": "latency_ms"}.get(kind, kind)] for p in table7["fixed"])
            for t in ("normal", "reduce"):
                index, ops = _edge_index("nasp-7", t), space.cells[t].ops
                for n, (op, j) in enumerate(g.cells[t]):
                    total += float(mats[t][index[(n // 2, j)], ops.index(op)])
            assert total == pytest.approx(predict(table7, g, kind), rel=1e-12)


def test_reduction_cell_costs_are_measured_at_their_stride(table7):
    space = get_space("nasp-7")
    params = cost_matrices(table7, space, "params")
    ops = space.cells["reduce"].ops
    from_input, between_nodes = _edge_index("nasp-7", "reduce")[(1, 0)], \
        _edge_index("nasp-7", "reduce")[(1, 2)]
    skip, sep = ops.index("skip_connect"), ops.index("sep_conv_3x3")
    assert params["reduce"][from_input, skip] > 0  # factorized reduce at stride 2
    assert params["reduce"][between_nodes, skip] == 0  # identity
    # layers=6: normal cells 0, 1 (C=4), 3 (C=8), 5 (C=16): all four are summed
    assert params["normal"][0, sep] == sum(
        len(p["cells"]) * p["ops"]["sep_conv_3x3"]["params"] for p in table7["positions"]
        if p["cell_type"] == "normal")


def test_table_file_round_trip_and_mismatches(table7, tmp_path):
    path = tmp_path / "costs.json"
    save_table(table7, path)
    again = load_table(path)
    assert again == json.loads(json.dumps(table7))
    assert set(again["positions"][0]["ops"]["sep_conv_3x3"]) == \
        {"latency_ms", "latency_iqr_ms", "params", "madds"}
    with pytest.raises(NaspError, match="the cost table is of space 'nasp-7'"):
        cost_matrices(path, get_space("nasp-12"), "params")
    unnamed = {k: v for k, v in table7.items() if k != "space"}  # without the space's name,
    with pytest.raises(NaspError, match="no 'conv_1x3_3x1'"):    # the ops themselves tell
        cost_matrices(unnamed, get_space("nasp-12"), "params")
    with pytest.raises(NaspError, match="unknown cost kind"):
        cost_matrices(path, get_space("nasp-7"), "flops")
    (tmp_path / "other.json").write_text(json.dumps({"format": "something"}))
    with pytest.raises(NaspError, match="not a nasp cost table"):
        load_table(tmp_path / "other.json")
    with pytest.raises(NaspError, match="no DARTS-style"):
        network_layout(get_space("rnn"), SHAPE, CLASSES, 4, 3)


def test_wall_clock_counts_waiting_and_cpu_clock_does_not():
    def nap():
        time.sleep(0.002)

    wall, = time_calls([nap], CPU, warmup=0, repeats=3, clock="wall")
    cpu, = time_calls([nap], CPU, warmup=0, repeats=3, clock="cpu")
    assert wall.median_s >= 0.0019
    assert cpu.median_s < 0.001
    with pytest.raises(NaspError, match="unknown clock"):
        time_calls([nap], CPU, clock="sundial")


def test_cli_profile_then_info_predicts(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(latency, "MIN_REPEAT_S", 0.0)  # one call per repeat: a fast test
    out = tmp_path / "costs.json"
    assert main(["profile", "--space", "nasp-7", "--layers", "3", "--channels", "4",
                 "--repeats", "2", "--warmup", "0", "--threads", "1", "-o", str(out)]) == 0
    text = capsys.readouterr().out
    assert "35 ops at 5 positions of a 3-cell C=4 network" in text
    table = load_table(out)
    assert table["network"]["input_shape"] == [1, 28, 28] and table["batch_size"] == 1
    assert main(["info", "--genotype", "DARTS_V2", "--cost-table", str(out), "--batch-size",
                 "2", "--repeats", "2"]) == 0
    text = capsys.readouterr().out
    assert "3 cells, C=4" in text and "batch 1:" in text and "batch 2:" in text
    assert "predicts" in text and "matches the network's count" in text
    assert main(["info", "--genotype", "DARTS_V2", "--cost-table", str(out), "--layers",
                 "5"]) == 2
    assert "measured on a 3-cell" in capsys.readouterr().err
    assert main(["info", "--genotype", "DARTS_V2", "--task", "lm", "--latency"]) == 2
    assert "for CNN genotypes" in capsys.readouterr().err
