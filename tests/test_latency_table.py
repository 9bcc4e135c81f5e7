"""The shipped NAS-Bench-201 latency table: the accuracy table's cells, in its order."""

import gzip
from importlib import resources

import numpy as np
import pytest

from nasp.cli import main
from nasp.errors import NaspError
from nasp.nb201.latency import (
    DEVICES,
    LATENCY_FILE,
    _read,
    cheapest,
    device_latency,
    latency_table,
    under_budget,
)
from nasp.nb201.table import table

CELL0 = ("|avg_pool_3x3~0|+|nor_conv_1x1~0|skip_connect~1|"
         "+|nor_conv_1x1~0|skip_connect~1|skip_connect~2|")


def test_cells_and_index_order_are_the_accuracy_tables():
    lat, acc = latency_table(), table()
    assert len(lat) == 15625 and lat.ms.shape == (15625, 27)
    assert lat.archs == acc.archs  # row i is cell i of both tables
    assert len(DEVICES) == 27 and np.isfinite(lat.ms).all() and (lat.ms > 0).all()


def test_published_values_and_queries():
    assert device_latency(CELL0, "raspi4") == pytest.approx(10.482)  # HW-NAS-Bench's cell 0
    assert device_latency(CELL0, "fpga") == pytest.approx(2.573)
    fast = cheapest("fpga")
    assert fast["latency_ms"] == latency_table().column("fpga").min()
    under = under_budget("fpga", 4.0)
    assert under["best"]["latency_ms"] <= 4.0 and under["median"]["latency_ms"] <= 4.0
    assert under["best"]["cifar100_test"] >= under["median"]["cifar100_test"]
    assert under_budget("fpga", 0.5)["cells"] == 0


def test_a_damaged_latency_table_is_refused():
    path = resources.files("nasp") / "data" / "bundled" / "nb201" / LATENCY_FILE
    data = gzip.decompress(path.read_bytes())
    damaged = data.replace(b"10.482", b"10.483", 1)
    assert damaged != data
    with pytest.raises(NaspError, match="does not match its recorded sha256"):
        _read(damaged, LATENCY_FILE)


def test_info_prints_measured_latencies(capsys):
    assert main(["info", "--genotype", CELL0, "--device-latency", "raspi4"]) == 0
    out = capsys.readouterr().out
    assert "raspi4" in out and "10.482 ms" in out
    assert main(["info", "--genotype", CELL0, "--device-latency", "all"]) == 0
    out = capsys.readouterr().out
    assert all(d in out for d in DEVICES)
