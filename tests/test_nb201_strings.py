"""NAS-Bench-201 cell strings and the nb201 genotype family."""

import json

import pytest

from nasp.errors import NaspError
from nasp.genotype import GENOTYPES, Genotype, get_genotype, nb201_genotype
from nasp.nb201.strings import NUM_CELLS, all_cells, format_arch, parse_arch

BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")


def test_string_genotype_json_round_trip_on_every_cell():
    seen = set()
    for pairs in all_cells():
        text = format_arch(pairs)
        geno = Genotype.from_arch_str(text)
        assert geno.cells["cell"] == pairs and geno.arch_str == text
        assert Genotype.from_dict(json.loads(geno.to_json())) == geno
        seen.add(text)
    assert len(seen) == NUM_CELLS == 15625


def test_string_is_read_in_node_order():
    geno = get_genotype(BEST)
    assert geno.family == "nb201" and geno.task == "cnn"
    assert geno.cells["cell"] == (("nor_conv_3x3", 0), ("nor_conv_3x3", 0), ("nor_conv_3x3", 1),
                                  ("skip_connect", 0), ("nor_conv_3x3", 1), ("nor_conv_1x1", 2))
    assert geno.concat == {"cell": (3,)}
    assert geno.to_dict() == {"cell": [["nor_conv_3x3", 0], ["nor_conv_3x3", 0],
                                       ["nor_conv_3x3", 1], ["skip_connect", 0],
                                       ["nor_conv_3x3", 1], ["nor_conv_1x1", 2]],
                              "cell_concat": [3]}


@pytest.mark.parametrize("text, match", [
    ("|nor_conv_3x3~0|+|none~0|none~1|", "2 nodes"),
    ("|nor_conv_3x3~0|+|none~0|+|none~0|none~1|none~2|", "1 inputs, expected 2"),
    ("|nor_conv_3x3~0|+|none~1|none~0|+|none~0|none~1|none~2|", "should read op~0"),
    ("|sep_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "unknown NAS-Bench-201 op"),
    ("nor_conv_3x3~0|+|none~0|none~1|+|none~0|none~1|none~2|", "not |op~j|"),
])
def test_bad_strings_are_errors_naming_the_fault(text, match):
    with pytest.raises(NaspError, match=match):
        parse_arch(text)


def test_get_genotype_accepts_a_cell_string_a_file_and_a_run_folder(tmp_path):
    geno = get_genotype(BEST)
    geno.to_json(tmp_path / "genotype.json")
    assert get_genotype(str(tmp_path)) == geno
    assert get_genotype(str(tmp_path / "genotype.json")) == geno
    with pytest.raises(NaspError, match="unknown NAS-Bench-201 op"):
        get_genotype(BEST.replace("nor_conv_1x1", "nor_conv_5x5"))


@pytest.mark.parametrize("edit, match", [
    (lambda d: d["cell"].pop(), "5 edges, expected 6"),
    (lambda d: d["cell"][2].__setitem__(1, 0), "edge 2 of cell 'cell' takes input 0, expected 1"),
    (lambda d: d["cell"][0].__setitem__(0, "sep_conv_3x3"), "unknown op 'sep_conv_3x3'"),
    (lambda d: d.__setitem__("cell_concat", [1, 2, 3]), "output is node 3"),
])
def test_nb201_validation(edit, match):
    data = get_genotype(BEST).to_dict()
    edit(data)
    with pytest.raises(NaspError, match=match):
        Genotype.from_dict(data)


def test_other_families_are_unchanged():
    darts = GENOTYPES["cnn"]["DARTS_V2"]
    assert darts.family == "darts" and GENOTYPES["lm"]["DARTS_V2"].family == "rnn"
    assert set(darts.to_dict()) == {"normal", "normal_concat", "reduce", "reduce_concat"}
    with pytest.raises(NaspError, match="no NAS-Bench-201 cell string"):
        _ = darts.arch_str
    with pytest.raises(NaspError, match="edge 2 of cell 'cell' takes input 0, expected 1"):
        nb201_genotype([("none", 0)] * 6)
