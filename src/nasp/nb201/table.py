"""The benchmark's ground truth shipped with nasp: 200-epoch test accuracy of all 15,625 cells.

The table (``data/bundled/nb201``, see its README for provenance) is read on first use and kept
for the life of the process; a search that scores its cell every epoch pays for the read once.
Its sha256 is checked on that read, so a damaged install fails loudly instead of scoring
searches against wrong numbers.
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

from nasp.errors import NaspError
from nasp.nb201.strings import NUM_CELLS, format_arch, parse_arch

TABLE_FILE = "nb201_test_200ep.csv.gz"
TABLE_SHA256 = "13968d366ca62642e896af5059b0fbf9036627569e33b2dc41d0c192d1b4ed63"
COLUMNS = ("cifar10_test", "cifar100_test", "imagenet16_test")

# what the ground-truth numbers of a search are (result.json's "nb201_note", `nasp search`'s
# summary): a fact about the cell, not a score of the data the search ran on
NOTE = ("nb201_* are the found cell's test accuracies (%) from NAS-Bench-201's own 200-epoch "
        "training on CIFAR-10, CIFAR-100 and ImageNet16-120, whatever data this search ran on")

# the names users and other tools give the three datasets -> the table's column
_DATASETS = {
    "cifar10": "cifar10_test", "cifar-10": "cifar10_test",
    "cifar100": "cifar100_test", "cifar-100": "cifar100_test",
    "imagenet16": "imagenet16_test", "imagenet16-120": "imagenet16_test",
    **{c: c for c in COLUMNS},
}


@dataclass(frozen=True)
class Table:
    """``index[arch]`` is the benchmark index of a cell string; ``acc[column][index]`` its
    accuracy (%)."""

    archs: tuple[str, ...]
    index: dict[str, int]
    acc: dict[str, tuple[float, ...]]

    def __len__(self) -> int:
        return len(self.archs)


def _read(data: bytes, source: str) -> Table:
    if hashlib.sha256(data).hexdigest() != TABLE_SHA256:
        raise NaspError(f"{source} does not match its recorded sha256",
                        "the nasp installation is damaged; reinstall nasp")
    reader = csv.reader(io.StringIO(data.decode()))
    header = next(reader)
    if tuple(header) != ("index", "arch_str", *COLUMNS):  # guards a re-export of the file
        raise ValueError(f"{source}: unexpected columns {header}")
    archs: list[str] = []
    values: list[tuple[float, ...]] = []
    for i, (index, arch, *acc) in enumerate(reader):
        if int(index) != i:
            raise ValueError(f"{source}: row {i} has index {index}")
        archs.append(arch)
        values.append(tuple(map(float, acc)))
    columns = zip(*values)
    return Table(tuple(archs), {a: i for i, a in enumerate(archs)},
                 {c: tuple(v) for c, v in zip(COLUMNS, columns)})


@functools.cache
def table() -> Table:
    """The ground-truth table, read and checked once per process."""
    path = resources.files("nasp") / "data" / "bundled" / "nb201" / TABLE_FILE
    try:
        data = gzip.decompress(path.read_bytes())
    except (OSError, EOFError) as e:
        raise NaspError(f"cannot read the bundled NAS-Bench-201 table {TABLE_FILE}: {e}",
                        "the nasp installation is incomplete; reinstall nasp") from None
    t = _read(data, TABLE_FILE)
    if len(t) != NUM_CELLS:  # also guaranteed by the checksum
        raise ValueError(f"{TABLE_FILE} has {len(t)} rows, expected {NUM_CELLS}")
    return t


def arch_string(cell: Any) -> str:
    """The canonical benchmark string of a cell given as a string or an nb201 ``Genotype``."""
    if isinstance(cell, str):
        return format_arch(parse_arch(cell))
    cells = getattr(cell, "cells", None)
    if not isinstance(cells, dict) or "cell" not in cells:
        raise NaspError(f"{cell!r} is not a NAS-Bench-201 cell",
                        "pass a cell string (|op~0|+|op~0|op~1|+|...|) or an nb201 genotype")
    return format_arch(cells["cell"])


def index_of(cell: Any) -> int:
    """The cell's benchmark index (NATS-Bench tss order)."""
    return table().index[arch_string(cell)]


def lookup(cell: Any) -> dict[str, float]:
    """200-epoch test accuracy (%) of a cell on the benchmark's three datasets:
    ``{"cifar10_test": .., "cifar100_test": .., "imagenet16_test": ..}``."""
    t = table()
    i = t.index[arch_string(cell)]
    return {c: t.acc[c][i] for c in COLUMNS}


def column(dataset: str) -> str:
    """The table column of a dataset name (``cifar10``, ``cifar100``, ``imagenet16-120``, or a
    column name itself)."""
    key = dataset.lower()
    if key not in _DATASETS:
        raise NaspError(f"no NAS-Bench-201 ground truth for dataset {dataset!r}",
                        "use cifar10, cifar100 or imagenet16-120")
    return _DATASETS[key]


def best(dataset: str = "cifar10") -> dict[str, Any]:
    """The table's best cell for ``dataset``: ``{"arch", "index", <the three accuracies>}``
    (the first in index order on a tie)."""
    t = table()
    col = t.acc[column(dataset)]
    i = max(range(len(col)), key=col.__getitem__)
    return {"arch": t.archs[i], "index": i, **{c: t.acc[c][i] for c in COLUMNS}}
