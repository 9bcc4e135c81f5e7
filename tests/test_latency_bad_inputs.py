"""Bad input to the latency-budget commands: one `error:` line each, exit 2, nothing written."""

import numpy as np
import pytest

from nasp.cli import main
from nasp.cost_model import CostModel
from nasp.nb201.strings import OP_NAMES

CELL = "|nor_conv_3x3~0|+|none~0|none~1|+|skip_connect~0|none~1|nor_conv_1x1~2|"
SEARCH = ["search", "--space", "nb201", "--max-train-samples", "128", "--channels", "4",
          "--epochs", "1", "--batch-size", "16", "--max-steps-per-epoch", "1", "--quiet"]


def one_error(capsys, argv):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ")
    return err[0]


@pytest.fixture
def table(tmp_path):
    cost = np.zeros((6, 5))
    cost[:, OP_NAMES.index("nor_conv_3x3")] = 2.0
    path = tmp_path / "costs.json"
    CostModel("nb201", {"cell": cost}, 3.0, "cost").save(path)
    return str(path)


@pytest.mark.parametrize("argv", [
    ["info", "--genotype", CELL, "--device-latency", "iphone"],
    ["costs", "fit", "--device-latency", "iphone", "-o", "{out}"],
    [*SEARCH, "--target-device", "iphone", "--out", "{out}"],
])
def test_unknown_device_lists_the_27(tmp_path, capsys, argv):
    out = tmp_path / "out"
    line = one_error(capsys, [a.replace("{out}", str(out)) for a in argv])
    assert "'iphone'" in line and "raspi4" in line and "titanxp_32" in line
    assert "27 devices" in line and not out.exists()


def test_a_budget_below_the_cheapest_cell_names_its_latency(tmp_path, capsys, table):
    out = tmp_path / "run"
    line = one_error(capsys, [*SEARCH, "--cost-table", table, "--latency-target", "2.5",
                              "--out", str(out)])
    assert "3.000 ms" in line and "cheapest cell" in line and "|none~0|" in line
    assert not out.exists()


def test_a_csv_with_an_unparseable_row_names_its_line(tmp_path, capsys):
    csv = tmp_path / "m.csv"
    csv.write_text(f"genotype,ms\n{CELL},4.2\n{CELL},n/a\n")
    out = tmp_path / "fit.json"
    line = one_error(capsys, ["costs", "fit", "--csv", str(csv), "-o", str(out)])
    assert "line 3" in line and not out.exists()
    csv.write_text(f"{CELL},4.2\n|nor_conv_3x3~0|+|bogus~0|,5\n")
    line = one_error(capsys, ["costs", "fit", "--csv", str(csv), "-o", str(out)])
    assert "line 2" in line and not out.exists()


def test_more_samples_than_the_table_has(tmp_path, capsys):
    out = tmp_path / "fit.json"
    line = one_error(capsys, ["costs", "fit", "--device-latency", "fpga", "--samples", "20000",
                              "-o", str(out)])
    assert "15625" in line and not out.exists()


def test_a_target_without_a_cost_table(tmp_path, capsys):
    out = tmp_path / "run"
    line = one_error(capsys, [*SEARCH, "--latency-target", "8", "--out", str(out)])
    assert "cost table" in line and not out.exists()


def test_a_target_for_a_strategy_without_budgets(tmp_path, capsys, table):
    out = tmp_path / "run"
    line = one_error(capsys, [*SEARCH, "--strategy", "random", "--cost-table", table,
                              "--latency-target", "8", "--out", str(out)])
    assert "random" in line and not out.exists()
