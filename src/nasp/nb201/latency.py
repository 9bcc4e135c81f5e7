"""Measured latency of every NAS-Bench-201 cell on 27 devices, shipped with nasp.

The table (``data/bundled/nb201/nb201_latency_ms.csv.gz``, provenance in the README beside it:
HELP's and HW-NAS-Bench's published measurements) holds, per cell in the benchmark's index
order, the latency (ms) of the benchmark's evaluation network with that cell on each device.
With the accuracy table (``nasp.nb201.table``) every cell has a true accuracy and a true
latency, so a latency-constrained search can be scored against both without any hardware.

Read on first use and kept for the life of the process; its sha256 is checked on that read,
and its cells must be the accuracy table's, row by row, so the two can never be joined wrongly.
"""

from __future__ import annotations

import csv
import functools
import gzip
import hashlib
import io
from dataclasses import dataclass
from importlib import resources
from typing import Any

import numpy as np

from nasp.errors import NaspError
from nasp.nb201.strings import NUM_CELLS

LATENCY_FILE = "nb201_latency_ms.csv.gz"
LATENCY_SHA256 = "e2c1c159fd0df25965f8ee91ce05120185ab4cb8d8b90b8c4b3a778ae8592fa9"
# the devices, in the file's column order
DEVICES = (
    "1080ti_1", "1080ti_256", "1080ti_32", "2080ti_1", "2080ti_256", "2080ti_32",
    "essential_ph_1", "eyeriss", "fpga", "gold_6226", "gold_6240", "pixel2", "pixel3", "raspi4",
    "samsung_a50", "samsung_s7", "silver_4114", "silver_4210r", "titan_rtx_1", "titan_rtx_256",
    "titan_rtx_32", "titanx_1", "titanx_256", "titanx_32", "titanxp_1", "titanxp_256",
    "titanxp_32",
)


@dataclass(frozen=True)
class LatencyTable:
    """``archs[i]`` is cell i's string; ``ms[:, d]`` the latency (ms) on ``DEVICES[d]``."""

    archs: tuple[str, ...]
    ms: np.ndarray

    def __len__(self) -> int:
        return len(self.archs)

    def column(self, device: str) -> np.ndarray:
        """Latencies (ms) of every cell on ``device``, in index order (read-only)."""
        return self.ms[:, DEVICES.index(check_device(device))]


def check_device(device: str) -> str:
    """``device`` if the table has it, else a ``NaspError`` listing the 27 names."""
    if device not in DEVICES:
        raise NaspError(f"no measured latencies for device {device!r}",
                        f"use one of the {len(DEVICES)} devices: {', '.join(sorted(DEVICES))}")
    return device


def _read(data: bytes, source: str) -> LatencyTable:
    if hashlib.sha256(data).hexdigest() != LATENCY_SHA256:
        raise NaspError(f"{source} does not match its recorded sha256",
                        "the nasp installation is damaged; reinstall nasp")
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    if tuple(header) != ("index", "arch_str", *DEVICES):  # guards a re-export of the file
        raise ValueError(f"{source}: unexpected columns {header}")
    archs, rows = [], []
    for i, (index, arch, *values) in enumerate(reader):
        if int(index) != i:
            raise ValueError(f"{source}: row {i} has index {index}")
        archs.append(arch)
        rows.append([float(v) for v in values])
    ms = np.asarray(rows, dtype=np.float64)
    ms.setflags(write=False)
    return LatencyTable(tuple(archs), ms)


@functools.cache
def latency_table() -> LatencyTable:
    """The measured-latency table, read and checked once per process; its cells are the
    accuracy table's, in the same order (checked here)."""
    from nasp.nb201.table import table

    path = resources.files("nasp") / "data" / "bundled" / "nb201" / LATENCY_FILE
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise NaspError(f"cannot read the bundled NAS-Bench-201 latency table {LATENCY_FILE}: "
                        f"{e}", "the nasp installation is incomplete; reinstall nasp") from None
    t = _read(data, LATENCY_FILE)
    if len(t) != NUM_CELLS or t.archs != table().archs:
        raise ValueError(f"{LATENCY_FILE}: its cells are not the accuracy table's, in order")
    return t


def device_latency(cell: Any, device: str) -> float:
    """Measured latency (ms) of a cell (string or nb201 genotype) on ``device``."""
    from nasp.nb201.table import index_of

    return float(latency_table().column(device)[index_of(cell)])


def device_latencies(cell: Any) -> dict[str, float]:
    """Measured latency (ms) of a cell on every device, in ``DEVICES`` order."""
    from nasp.nb201.table import index_of

    row = latency_table().ms[index_of(cell)]
    return {d: float(v) for d, v in zip(DEVICES, row)}


def cheapest(device: str) -> dict[str, Any]:
    """The fastest cell on ``device``: ``{"arch", "index", "latency_ms"}``."""
    t = latency_table()
    col = t.column(device)
    i = int(np.argmin(col))
    return {"arch": t.archs[i], "index": i, "latency_ms": float(col[i])}


def under_budget(device: str, budget_ms: float, dataset: str = "cifar100") -> dict[str, Any]:
    """What any method could reach under a latency budget on ``device``: the best and the
    median cell (by true accuracy on ``dataset``) among the cells whose measured latency is at
    most ``budget_ms``; ``{"cells": n, "best": {...}, "median": {...}}`` (None when none)."""
    from nasp.nb201.table import COLUMNS, column, table

    acc_table, col = table(), column(dataset)
    lat = latency_table().column(device)
    idx = np.flatnonzero(lat <= budget_ms)
    if len(idx) == 0:
        return {"cells": 0, "best": None, "median": None}
    acc = np.asarray(acc_table.acc[col])[idx]
    order = idx[np.argsort(acc, kind="stable")]

    def cell(i: int) -> dict[str, Any]:
        return {"arch": acc_table.archs[i], "index": int(i), "latency_ms": float(lat[i]),
                **{c: acc_table.acc[c][i] for c in COLUMNS}}

    return {"cells": int(len(idx)), "best": cell(int(order[-1])),
            "median": cell(int(order[(len(order) - 1) // 2]))}
