"""Cell diagrams: matplotlib drawings without Graphviz, their legibility (no overlaps, fewest
crossings), DOT text for CNN, recurrent and NAS-Bench-201 cells, and errors."""

from __future__ import annotations

import itertools
import random
import shutil
import xml.etree.ElementTree as ET

import pytest

from nasp.errors import NaspError
from nasp.genotype import GENOTYPES
from nasp.viz import cell_layout, cells
from nasp.viz.cell_figure import FAMILY_COLORS, _text_size, cell_figure, cell_layouts, op_family
from nasp.viz.cell_layout import CellGraph, layout_cell

NORMAL = [["sep_conv_3x3", 0], ["sep_conv_5x5", 1], ["skip_connect", 0], ["dil_conv_3x3", 2],
          ["sep_conv_3x3", 1], ["skip_connect", 3], ["dil_conv_5x5", 0], ["conv_7x1_1x7", 4]]
REDUCE = [["max_pool_3x3", 0], ["max_pool_3x3", 1], ["avg_pool_3x3", 2], ["skip_connect", 1],
          ["max_pool_5x5", 0], ["skip_connect", 2], ["skip_connect", 3], ["avg_pool_3x3", 4]]
CNN = {"normal": NORMAL, "normal_concat": [2, 3, 4, 5], "reduce": REDUCE,
       "reduce_concat": [2, 3, 4, 5]}
RNN = {"recurrent": [["sigmoid", 0], ["relu", 1], ["relu", 1], ["identity", 1], ["tanh", 2],
                     ["sigmoid", 5], ["tanh", 3], ["relu", 5]], "concat": list(range(1, 9))}
# NAS-Bench-201: node 1 <- 0; node 2 <- 0, 1; node 3 <- 0, 1, 2; the output is node 3
NB201 = {"cell": [["nor_conv_1x1", 0], ["none", 0], ["skip_connect", 1], ["avg_pool_3x3", 0],
                  ["none", 1], ["nor_conv_3x3", 2]], "cell_concat": [3]}
PUBLISHED = [g.to_dict() for task in GENOTYPES.values() for g in task.values()]

needs_dot = pytest.mark.skipif(shutil.which("dot") is None,
                               reason="Graphviz 'dot' is not installed (apt-get install graphviz)")


@pytest.fixture
def no_graphviz(monkeypatch):
    """Drawing must not need the dot program: pretend it is not installed."""
    monkeypatch.setattr(shutil, "which", lambda name: None)


def svg_texts(data: bytes | str) -> list[str]:
    root = ET.fromstring(data)
    return [" ".join("".join(el.itertext()).split()) for el in root.iter()
            if el.tag.endswith("text")]


# --- drawing with matplotlib -------------------------------------------------------------------

def test_svg_diagram_names_every_op_without_graphviz(tmp_path, no_graphviz):
    (path,) = cells.draw_genotype(CNN, tmp_path / "cell.svg")
    assert path == tmp_path / "cell.svg"
    texts = svg_texts(path.read_bytes())
    assert sorted(t for t in texts if "_" in t) == sorted(op for op, _ in NORMAL + REDUCE)
    assert {"normal cell", "reduce cell", "0", "1", "2", "3"} <= set(texts)
    # c_{k-2} is set as math: one text element per state name, subscript included
    assert texts.count("c k − 2") == texts.count("c k − 1") == texts.count("c k") == 2
    # the legend names the op families that occur, once each
    assert {"sep conv", "dil conv", "conv", "pool", "skip / identity"} <= set(texts)


def test_png_and_pdf_without_graphviz(tmp_path, no_graphviz):
    (png,) = cells.draw_genotype(RNN, tmp_path / "rnn.png")
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    (pdf,) = cells.draw_genotype(CNN, tmp_path / "cnn.pdf")
    assert pdf.read_bytes().startswith(b"%PDF")


def test_split_writes_one_file_per_cell(tmp_path, no_graphviz):
    paths = cells.draw_genotype(CNN, tmp_path / "cell.svg", split=True)
    assert [p.name for p in paths] == ["cell-normal.svg", "cell-reduce.svg"]
    normal = svg_texts(paths[0].read_bytes())
    assert "conv_7x1_1x7" in normal and "max_pool_5x5" not in normal


def test_edges_are_coloured_by_op_family():
    fig = cell_figure(cells.cell_graphs(CNN, ["reduce"]))
    drawn = {p.get_edgecolor()[:3] for p in fig.axes[0].patches if p.get_fill() is False}
    from matplotlib.colors import to_rgb

    expected = {to_rgb(FAMILY_COLORS[f]) for f in ("pool", "skip / identity", "")}
    assert drawn == expected
    assert op_family("sep_conv_5x5") == "sep conv" and op_family("max_pool_5x5") == "pool"
    assert op_family("nor_conv_3x3") == "conv" and op_family("none") == "none"
    assert op_family("some_new_op") == "other"


def test_nb201_cell_reads_node_0_and_outputs_node_3(no_graphviz, tmp_path):
    graph = cells.cell_graph(NB201, "cell")
    assert graph.inputs == ("0",) and [label for label, _ in graph.nodes] == ["1", "2", "3"]
    assert [len(edges) for _, edges in graph.nodes] == [1, 2, 3]
    assert graph.output == (3,)
    fig = cell_figure([graph])
    dashed = [p for p in fig.axes[0].patches
              if p.get_fill() is False and p.get_linestyle() not in ("-", "solid")]
    assert len(dashed) == 2  # the two `none` edges
    (path,) = cells.draw_genotype(NB201, tmp_path / "nb.svg")
    assert {"nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3", "none"} <= set(
        svg_texts(path.read_bytes()))


# --- legibility ---------------------------------------------------------------------------------

def _boxes(layout):
    return [(v.x - v.width / 2, v.y - v.height / 2, v.x + v.width / 2, v.y + v.height / 2, i)
            for i, v in enumerate(layout.vertices) if v.kind != "dummy"]


def _curve_points(layout, edge):
    from nasp.viz.cell_figure import _edge_path

    polys = _edge_path(edge.points).to_polygons(closed_only=False)
    return [tuple(p) for poly in polys for p in poly]


@pytest.mark.parametrize("genotype", PUBLISHED + [NB201, CNN, RNN])
def test_no_label_or_box_overlaps_another_or_lies_under_an_edge(genotype):
    for layout in cell_layouts(cells.cell_graphs(genotype)):
        boxes = _boxes(layout)
        for (ax0, ay0, ax1, ay1, a), (bx0, by0, bx1, by1, b) in itertools.combinations(boxes, 2):
            overlap = ax0 < bx1 and bx0 < ax1 and ay0 < by1 and by0 < ay1
            assert not overlap, (layout.graph.title, layout.vertices[a], layout.vertices[b])
        # every text fits its box
        for v in layout.vertices:
            if v.kind != "dummy":
                w, h = _text_size(v.text, "label" if v.kind == "label" else "node")
                assert w < v.width and h < v.height
        # an edge touches only its own boxes: its ends and its label
        eps = 0.01
        for e in layout.edges:
            own = set(e.chain)
            for x, y in _curve_points(layout, e):
                for x0, y0, x1, y1, i in boxes:
                    if i not in own:
                        inside = x0 + eps < x < x1 - eps and y0 + eps < y < y1 - eps
                        assert not inside, (layout.graph.title, e.op, layout.vertices[i].text)


def _brute_force_crossings(layout) -> int:
    links = cell_layout._links(layout.edges)
    columns = layout.order
    best = None
    for combo in itertools.product(*(itertools.permutations(c) for c in columns)):
        c = cell_layout._crossings([list(col) for col in combo], links, layout.vertices)
        best = c if best is None else min(best, c)
    return best


def _random_graph(rng: random.Random, nodes: int) -> CellGraph:
    ops = ["sep_conv_3x3", "max_pool_3x3", "skip_connect", "dil_conv_5x5"]
    built = []
    for i in range(nodes):
        inputs = rng.sample(range(2 + i), 2)
        built.append((str(i), tuple((rng.choice(ops), j) for j in inputs)))
    return CellGraph("random", ("a", "b"), tuple(built), tuple(range(2, 2 + nodes)), "out")


@pytest.mark.parametrize("seed, nodes", [(s, 2) for s in range(12)] + [(4, 3)])
def test_layout_has_the_fewest_crossings_any_order_gives(seed, nodes):
    # small random cells, so that trying every order of every column takes seconds
    graph = _random_graph(random.Random(seed), nodes)
    layout = layout_cell(graph, _text_size)
    assert layout.crossings == _brute_force_crossings(layout)


def test_published_cells_cross_no_more_than_their_best_order():
    # the minimum found once by trying every order: the normal cells of DARTS must cross
    # where each of three nodes reads both cell inputs; the recurrent cells never
    crossings = {}
    for name, geno in GENOTYPES["cnn"].items():
        crossings[name] = [lay.crossings for lay in cell_layouts(cells.cell_graphs(geno.to_dict()))]
    for name, geno in GENOTYPES["lm"].items():
        (lay,) = cell_layouts(cells.cell_graphs(geno.to_dict()))
        assert lay.crossings == 0, name
    assert crossings == {"DARTS_V1": [3, 2], "DARTS_V2": [3, 1], "NASP_12": [2, 1]}


def test_exact_order_beats_or_matches_the_heuristic_on_published_cells():
    for geno in PUBLISHED:
        for graph in cells.cell_graphs(geno):
            vertices, edges = cell_layout._build(graph, _text_size)
            links = cell_layout._links(edges)
            ranks = 1 + max(v.rank for v in vertices)
            start = [[i for i, v in enumerate(vertices) if v.rank == r] for r in range(ranks)]
            heuristic = cell_layout._heuristic_order([list(c) for c in start], links, vertices)
            exact = cell_layout._exact_order(heuristic, links, vertices)
            if exact is None:  # columns too long to try every order: the recurrent cells
                assert cell_layout._crossings(heuristic, links, vertices) == 0
            else:
                assert (cell_layout._crossings(exact, links, vertices)
                        <= cell_layout._crossings(heuristic, links, vertices))


# --- Graphviz and text --------------------------------------------------------------------------

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
    # states: 0 = x_t, 1 = h_{t-1}, 2 = node 0, 3 = node 1...
    assert '"recurrent_0" -> "recurrent_2" [color=gray];' in src
    assert '"recurrent_7" -> "recurrent_8" [label="sigmoid"];' in src  # node 6 <- node 5
    assert src.count('-> "recurrent_out"') == 8


def test_nb201_dot_source():
    src = cells.dot_source(NB201)
    assert '"cell_1" -> "cell_3" [label="none"];' in src  # node 3 <- node 1
    assert src.count('-> "cell_out"') == 1 and '"cell_3" -> "cell_out"' in src


def test_dot_labels_are_escaped():
    geno = {**CNN, "normal": [['my"op\\', 0]] + NORMAL[1:]}
    assert r'[label="my\"op\\"]' in cells.dot_source(geno)


@pytest.mark.parametrize("bad, match", [
    ({"foo": []}, "no cell found"),
    ({"normal": [["sep_conv_3x3", 0]] * 7, "reduce": REDUCE}, "2 per node"),
    ({"normal": [["sep_conv_3x3", 0], ["sep_conv_3x3", 2]] + NORMAL[2:], "reduce": REDUCE},
     "takes input 2"),
    ({"normal": [["sep_conv_3x3"]] + NORMAL[1:], "reduce": REDUCE}, "not an \\[op, input\\]"),
    ({"cell": NB201["cell"][:5]}, "1, 2, 3"),
    ({"cell": [["none", 1]] + NB201["cell"][1:]}, "takes input 1"),
    ([1, 2], "JSON object"),
])
def test_malformed_genotypes_are_user_errors(bad, match):
    with pytest.raises(NaspError, match=match):
        cells.dot_source(bad)
    with pytest.raises(NaspError, match=match):
        cells.cell_graphs(bad)


def test_dot_output_needs_no_graphviz(tmp_path, no_graphviz):
    (path,) = cells.draw_genotype(CNN, tmp_path / "cell.dot")
    assert path.read_text() == cells.dot_source(CNN)


def test_graphviz_engine_without_dot_is_a_user_error(tmp_path, no_graphviz):
    with pytest.raises(NaspError) as err:
        cells.draw_genotype(CNN, tmp_path / "cell.svg", engine="graphviz")
    assert "apt-get install graphviz" in err.value.hint and "matplotlib" in err.value.hint
    assert not (tmp_path / "cell.svg").exists()


@needs_dot
def test_graphviz_engine_renders_svg(tmp_path):
    (path,) = cells.draw_genotype(CNN, tmp_path / "cell.svg", engine="graphviz")
    texts = svg_texts(path.read_bytes())
    for op, _ in NORMAL + REDUCE:
        assert op in texts


def test_unknown_suffix_lists_the_formats(tmp_path):
    with pytest.raises(NaspError, match="format") as err:
        cells.draw_genotype(CNN, tmp_path / "cell.jpg")
    assert ".svg" in err.value.hint and ".dot" in err.value.hint


def test_genotype_text_lists_every_edge():
    text = cells.genotype_text(CNN)
    assert "normal cell (output = 0, 1, 2, 3):" in text
    assert "node 0 <- c_{k-2}: sep_conv_3x3" in text
    assert "node 3 <- 2: conv_7x1_1x7" in text
    assert "node 6 <- 5: sigmoid" in cells.genotype_text(RNN)
    assert "node 3 <- 2: nor_conv_3x3" in cells.genotype_text(NB201)


def test_genotype_edges_number_as_arch_jsonl():
    assert cells.checked_edges(CNN, "normal")[:3] == [(0, 0, "sep_conv_3x3"),
                                                       (0, 1, "sep_conv_5x5"),
                                                       (1, 0, "skip_connect")]
    assert cells.checked_edges(RNN, "recurrent")[5] == (5, 5, "sigmoid")
    assert [n for n, _, _ in cells.checked_edges(NB201, "cell")] == [0, 1, 1, 2, 2, 2]


@pytest.mark.parametrize("geno, space", [(GENOTYPES["cnn"]["DARTS_V2"], "darts"),
                                         (GENOTYPES["lm"]["DARTS_V2"], "rnn"),
                                         ("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|"
                                          "avg_pool_3x3~0|none~1|nor_conv_1x1~2|", "nb201")])
def test_drawings_and_the_search_read_a_genotype_through_its_one_walk(geno, space):
    """A diagram, a table and a search must agree on which node each edge of a genotype
    feeds: all three read it through ``Genotype.edges``."""
    from nasp.genotype import Genotype
    from nasp.spaces import get_space
    from nasp.strategies.discretize import genotype_edges

    geno = Genotype.from_arch_str(geno) if isinstance(geno, str) else geno
    spec = get_space(space).cells
    for name, edges in genotype_edges(geno, spec).items():
        walk = geno.edges(name)
        assert cells.checked_edges(geno.to_dict(), name) == walk
        assert [(*spec[name].edges[e], spec[name].ops[k]) for e, k in edges] == walk
        graph = cells.cell_graph(geno.to_dict(), name)
        drawn = [(op, s) for _, node_edges in graph.nodes for op, s in node_edges
                 if op is not None]
        shift = 2 if name == "recurrent" else 0  # x_t and h_{t-1} are drawn before node 0
        assert drawn == [(op, j + shift) for _, j, op in walk]
