"""Cell diagrams: DOT text for CNN and recurrent genotypes, rendering with dot, and errors."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from nasp.errors import NaspError
from nasp.viz import cells

NORMAL = [["sep_conv_3x3", 0], ["sep_conv_5x5", 1], ["skip_connect", 0], ["dil_conv_3x3", 2],
          ["sep_conv_3x3", 1], ["skip_connect", 3], ["dil_conv_5x5", 0], ["conv_7x1_1x7", 4]]
REDUCE = [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["avg_pool_3x3", 2], ["skip_connect", 1],
          ["max_pool_5x5", 0], ["skip_connect", 2], ["skip_connect", 3], ["avg_pool_3x3", 4]]
CNN = {"normal": NORMAL, "normal_concat": [2, 3, 4, 5], "reduce": REDUCE,
       "reduce_concat": [2, 3, 4, 5]}
RNN = {"recurrent": [["sigmoid", 0], ["relu", 1], ["relu", 1], ["identity", 1], ["tanh", 2],
                     ["sigmoid", 5], ["tanh", 3], ["relu", 5]], "concat": list(range(1, 9))}

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz 'dot' is not installed (apt-get install graphviz)")


def svg_texts(data: bytes | str) -> list[str]:
    root = ET.fromstring(data)
    return ["".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")]


def test_cnn_dot_source_has_both_cells_every_edge_and_the_output():
    src = cells.dot_source(CNN)
    assert src.startswith("digraph") and src.count("subgraph") == 2
    assert '"cluster_normal"' in src and '"cluster_reduce"' in src
    for cell, pairs in (("normal", NORMAL), ("reduce", REDUCE)):
        for e, (op, j) in enumerate(pairs):
            target = 2 + e // 2
            assert f'"{cell}_{j}" -> "{cell}_{target}" [label="{op}"];' in src
        for s in (2, 3, 4, 5):
            assert f'"{cell}_{s}" -> "{cell}_out"' in src
    assert src.count('label="c_{k-2}"') == 2 and src.count('label="c_{k}"') == 2


def test_recurrent_dot_source_reads_x_and_h():
    src = cells.dot_source(RNN)
    assert 'label="x_{t}"' in src and 'label="h_{t-1}"' in src and 'label="h_{t}"' in src
    assert '"recurrent_x" -> "recurrent_0"' in src
    assert '"recurrent_5" -> "recurrent_6" [label="sigmoid"];' in src
    assert src.count('-> "recurrent_out"') == 8


def test_dot_labels_are_escaped():
    geno = {**CNN, "normal": [['my"op\\', 0]] + NORMAL[1:]}
    assert r'[label="my\"op\\"]' in cells.dot_source(geno)


@pytest.mark.parametrize("bad, match", [
    ({"foo": []}, "no cell found"),
    ({"normal": [["sep_conv_3x3", 0]] * 7, "reduce": REDUCE}, "2 per node"),
    ({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 2]] + NORMAL[2:], "reduce": REDUCE},
     "takes input 2"),
    ({"normal": [["sep_conv_3x3"]] + NORMAL[1:], "reduce": REDUCE}, "not an \\[op, input\\]"),
    ([1, 2], "JSON object"),
])
def test_malformed_genotypes_are_user_errors(bad, match):
    with pytest.raises(NaspError, match=match):
        cells.dot_source(bad)


@needs_dot
def test_svg_diagram_names_every_op(tmp_path):
    (path,) = cells.draw_genotype(CNN, tmp_path / "cell.svg")
    assert path == tmp_path / "cell.svg"
    texts = svg_texts(path.read_bytes())
    for op, _ in NORMAL + REDUCE:
        assert op in texts
    assert {"normal cell", "reduce cell", "c_{k-2}", "c_{k-1}", "c_{k}", "0", "3"} <= set(texts)


@needs_dot
def test_split_writes_one_file_per_cell(tmp_path):
    paths = cells.draw_genotype(CNN, tmp_path / "cell.svg", split=True)
    assert [p.name for p in paths] == ["cell-normal.svg", "cell-reduce.svg"]
    normal = svg_texts(paths[0].read_bytes())
    assert "conv_7x1_1x7" in normal and "max_pool_5x5" not in normal


@needs_dot
def test_recurrent_png_and_pdf(tmp_path):
    (png,) = cells.draw_genotype(RNN, tmp_path / "rnn.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    (pdf,) = cells.draw_genotype(RNN, tmp_path / "rnn.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")
    texts = svg_texts(cells.render_svg(cells.dot_source(RNN)))
    assert {"x_{t}", "h_{t-1}", "h_{t}", "sigmoid", "identity", "8"} <= set(texts)


def test_dot_output_needs_no_graphviz(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    (path,) = cells.draw_genotype(CNN, tmp_path / "cell.dot")
    assert path.read_text() == cells.dot_source(CNN)
    with pytest.raises(NaspError) as err:
        cells.draw_genotype(CNN, tmp_path / "cell.svg")
    assert "apt-get install graphviz" in err.value.hint
    assert not (tmp_path / "cell.svg").exists()


def test_unknown_suffix_lists_the_formats(tmp_path):
    with pytest.raises(NaspError, match="format") as err:
        cells.draw_genotype(CNN, tmp_path / "cell.jpg")
    assert ".svg" in err.value.hint and ".dot" in err.value.hint


def test_genotype_text_lists_every_edge():
    text = cells.genotype_text(CNN)
    assert "node 0 <- c_{k-2}: sep_conv_3x3" in text
    assert "node 3 <- 2: conv_7x1_1x7" in text
    assert "node 6 <- 5: sigmoid" in cells.genotype_text(RNN)
