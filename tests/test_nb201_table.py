"""The bundled NAS-Bench-201 ground truth: complete, checked, and scoring cells correctly."""

import gzip
from importlib import resources

import pytest

from nasp.errors import NaspError
from nasp.genotype import get_genotype
from nasp.nb201 import best, index_of, lookup
from nasp.nb201.strings import all_cells, format_arch
from nasp.nb201.table import TABLE_FILE, _read, table

ALL_SKIP = ("|skip_connect~0|+|skip_connect~0|skip_connect~1|"
            "+|skip_connect~0|skip_connect~1|skip_connect~2|")


def test_table_has_every_cell_once():
    t = table()
    assert len(t) == 15625 and len(t.index) == 15625
    assert set(t.archs) == {format_arch(c) for c in all_cells()}


def test_all_skip_cell_and_the_published_optima():
    acc = lookup(ALL_SKIP)
    assert round(acc["cifar10_test"], 2) == 54.30
    assert round(acc["cifar100_test"], 2) == 15.61
    assert round(acc["imagenet16_test"], 2) == 16.32
    top = best("cifar10")
    assert round(top["cifar10_test"], 2) == 94.37
    assert lookup(top["arch"])["cifar10_test"] == top["cifar10_test"]
    assert index_of(top["arch"]) == top["index"]
    assert round(best("cifar100")["cifar100_test"], 2) == 73.51
    assert round(best("ImageNet16-120")["imagenet16_test"], 2) == 47.31


def test_lookup_accepts_a_genotype_and_rejects_other_cells():
    geno = get_genotype(ALL_SKIP)
    assert lookup(geno) == lookup(ALL_SKIP)
    with pytest.raises(NaspError, match="not a NAS-Bench-201 cell"):
        lookup(get_genotype("DARTS_V2"))
    with pytest.raises(NaspError, match="no NAS-Bench-201 ground truth"):
        best("mnist")


def test_a_damaged_table_is_refused():
    path = resources.files("nasp") / "data" / "bundled" / "nb201" / TABLE_FILE
    data = gzip.decompress(path.read_bytes())
    assert len(_read(data, "ok")) == 15625
    damaged = data.replace(b"54.29666666666666", b"94.99666666666666", 1)
    assert damaged != data
    with pytest.raises(NaspError, match="does not match its recorded sha256"):
        _read(damaged, TABLE_FILE)
