"""Cell diagrams of a genotype: drawn with matplotlib (no system program), or as Graphviz DOT.

The diagrams follow the convention of the DARTS and NASP papers so results can be set side by
side with theirs: CNN cells read c_{k-2}, c_{k-1} -> nodes 0..3 -> c_{k} with every edge labelled
by its op; the recurrent cell reads x_{t}, h_{t-1} -> node 0 -> nodes 1..8 -> h_{t}; a
NAS-Bench-201 cell reads its input node 0 -> nodes 1..3, and its output is node 3.

One diagram file holds every cell type of the genotype (a CNN architecture is the *pair* of
cells, and one file is easier to put in a paper or a report); ``split=True`` writes one file per
cell type. PNG, SVG and PDF are drawn by matplotlib (:mod:`nasp.viz.cell_figure`); Graphviz is
optional: ``.dot``/``.gv`` output writes DOT text without it, and ``engine="graphviz"`` renders
with the ``dot`` program where it is installed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nasp.errors import NaspError
from nasp.genotype import CELL_SHAPES, cell_edges, node_sizes
from nasp.viz.cell_layout import CellGraph

RENDER_SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
SOURCE_SUFFIXES = (".dot", ".gv")
ENGINES = ("matplotlib", "graphviz")
CNN_CELLS = ("normal", "reduce")
_INSTALL_HINT = ("install Graphviz with apt-get install graphviz (macOS: brew install "
                 "graphviz), or use the default engine, matplotlib, which needs no system program")
_COLORS = {"input": "#cfe8cf", "node": "#cfe0f5", "output": "#f5e6b8"}


def cell_types(genotype: dict[str, Any], source: str = "genotype") -> list[str]:
    """The cell types of ``genotype`` after checking its shape, so drawing never half-fails.

    Op names are not checked against a search space: a diagram of an op this version of nasp
    does not know is still a correct diagram.
    """
    if not isinstance(genotype, dict):
        raise NaspError(f"{source}: expected a JSON object", "see docs/run-folder.md")
    if "recurrent" in genotype:
        cells = ["recurrent"]
    elif "cell" in genotype:
        cells = ["cell"]
    else:
        cells = [c for c in CNN_CELLS if c in genotype]
    if not cells:
        raise NaspError(
            f"{source}: no cell found (keys: {', '.join(map(str, genotype)) or 'none'})",
            "a CNN genotype has normal and reduce, a recurrent one has recurrent, a "
            "NAS-Bench-201 one has cell; see docs/run-folder.md")
    for cell in cells:
        pairs = genotype[cell]
        inputs, _, keep = CELL_SHAPES[cell]
        if not isinstance(pairs, list) or len(pairs) != sum(node_sizes(cell)):
            per_node = f"{keep} per node" if keep else "1, 2, 3... per node"
            raise NaspError(f"{source}: {cell!r} must be a list of [op, input] pairs, "
                            f"{per_node}", "fix the genotype's edge list")
        for e, pair in enumerate(pairs):
            ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
                  and isinstance(pair[0], str) and isinstance(pair[1], int)
                  and not isinstance(pair[1], bool))
            if not ok:
                raise NaspError(f"{source}: {cell}[{e}] = {pair!r} is not an [op, input] pair",
                                "write it as [\"sep_conv_3x3\", 1]")
        for e, (node, j, _) in enumerate(cell_edges(cell, pairs)):
            if not 0 <= j < inputs + node:
                raise NaspError(
                    f"{source}: {cell}[{e}] (node {node}) takes input {j}, but only "
                    f"{inputs + node} states exist before that node",
                    "an input index must name a cell input or an earlier node")
    return cells


def checked_edges(genotype: dict[str, Any], cell: str,
                  source: str = "genotype") -> list[tuple[int, int, str]]:
    """(node, input, op) per kept edge of ``cell`` of a genotype.json dict, numbered as
    arch.jsonl's ``edges`` are: the genotype's own walk (:func:`nasp.genotype.cell_edges`),
    after :func:`cell_types` has checked the dict, which may come from any file."""
    present = cell_types(genotype, source)
    if cell not in present:
        raise NaspError(f"{source} has no cell {cell!r}", f"choose from {present}")
    return cell_edges(cell, genotype[cell])


def _concat(genotype: dict[str, Any], cell: str) -> list[int]:
    inputs, nodes, _ = CELL_SHAPES[cell]
    key = "concat" if cell == "recurrent" else f"{cell}_concat"
    last = inputs + nodes
    default = [last - 1] if cell == "cell" else list(range(inputs, last))
    value = genotype.get(key, default)
    if not isinstance(value, list):
        return default
    chosen = [int(n) for n in value if isinstance(n, int) and 0 <= n < last]
    return chosen or default


def _state_label(cell: str, state: int) -> str:
    if cell in ("recurrent", "cell"):
        return str(state)
    return ("c_{k-2}", "c_{k-1}")[state] if state < 2 else str(state - 2)


def cell_graph(genotype: dict[str, Any], cell: str, source: str = "genotype") -> CellGraph:
    """The drawable graph of one cell of ``genotype``, numbered as the papers number it."""
    walk = checked_edges(genotype, cell, source)
    inputs, n_nodes, _ = CELL_SHAPES[cell]
    per_node = [[(op, j) for node, j, op in walk if node == i] for i in range(n_nodes)]
    concat = _concat(genotype, cell)
    if cell == "recurrent":
        # x_t and h_{t-1} make node 0; genotype state j is node j, drawn as state j + 2
        nodes = [("0", ((None, 0), (None, 1)))]
        nodes += [(str(i + 1), tuple((op, j + 2) for op, j in edges))
                  for i, edges in enumerate(per_node)]
        return CellGraph("recurrent cell", ("x_{t}", "h_{t-1}"), tuple(nodes),
                         tuple(c + 2 for c in concat), "h_{t}")
    labels = tuple(_state_label(cell, s) for s in range(inputs))
    nodes = [(_state_label(cell, inputs + i), tuple(edges)) for i, edges in enumerate(per_node)]
    out_label = "c_{k}" if cell in CNN_CELLS else "output"
    return CellGraph(f"{cell} cell" if cell != "cell" else "cell", labels, tuple(nodes),
                     tuple(concat), out_label)


def cell_graphs(genotype: dict[str, Any], cells: Sequence[str] | None = None,
                source: str = "genotype") -> list[CellGraph]:
    present = cell_types(genotype, source)
    chosen = list(cells) if cells is not None else present
    return [cell_graph(genotype, c, source) for c in chosen]


# --- Graphviz ----------------------------------------------------------------------------------

def _q(text: str) -> str:
    """A DOT string literal; backslashes doubled so Graphviz escapes like \\N stay literal."""
    flat = " ".join(str(text).split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _dot_lines(graph: CellGraph, prefix: str, indent: str) -> list[str]:
    n_in = len(graph.inputs)
    ids = [_q(f"{prefix}_{s}") for s in range(graph.num_states)]
    out_id = _q(f"{prefix}_out")
    lines = []
    for s in range(graph.num_states):
        kind = "input" if s < n_in else "node"
        lines.append(f"{indent}{ids[s]} [label={_q(graph.state_label(s))}, "
                     f"fillcolor={_q(_COLORS[kind])}];")
    for i, (_, edges) in enumerate(graph.nodes):
        for op, s in edges:
            attrs = "[color=gray]" if op is None else f"[label={_q(op)}]"
            lines.append(f"{indent}{ids[s]} -> {ids[n_in + i]} {attrs};")
    lines.append(f"{indent}{out_id} [label={_q(graph.output_label)}, "
                 f"fillcolor={_q(_COLORS['output'])}];")
    for s in graph.output:
        lines.append(f"{indent}{ids[s]} -> {out_id} [color=gray];")
    return lines


def dot_source(genotype: dict[str, Any], cells: Sequence[str] | None = None,
               source: str = "genotype") -> str:
    """Graphviz DOT text for ``cells`` of ``genotype`` (all of them by default), one cluster
    per cell type, left to right as in the papers' figures.
    """
    present = cell_types(genotype, source)
    chosen = list(cells) if cells is not None else present
    unknown = [c for c in chosen if c not in present]
    if unknown:
        raise NaspError(f"{source} has no cell {unknown[0]!r}", f"choose from {present}")
    lines = [
        "digraph genotype {",
        "  rankdir=LR;",
        '  graph [fontname="Helvetica", fontsize=16, labeljust=l, nodesep=0.25, ranksep=0.6];',
        '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=14, '
        "height=0.45, penwidth=1.5];",
        '  edge [fontname="Helvetica", fontsize=12, arrowsize=0.8];',
    ]
    # With rankdir=LR dot stacks clusters bottom-up in source order; reversed, the first cell
    # (normal) ends up on top, as readers expect.
    for cell in reversed(chosen):
        graph = cell_graph(genotype, cell, source)
        lines.append(f"  subgraph {_q('cluster_' + cell)} {{")
        lines.append(f"    label={_q(graph.title)};")
        lines.append('    color="#999999";')
        lines += _dot_lines(graph, cell, "    ")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def find_dot() -> str:
    """Path of the ``dot`` executable, or a ``NaspError`` saying how to install it."""
    path = shutil.which("dot")
    if path is None:
        raise NaspError("the Graphviz 'dot' program is not on PATH, so engine 'graphviz' "
                        "cannot draw", _INSTALL_HINT)
    return path


def dot_available() -> bool:
    return shutil.which("dot") is not None


def render(source: str, fmt: str) -> bytes:
    """Run ``dot -T<fmt>`` on ``source``; a ``NaspError`` carries dot's own complaint."""
    try:
        proc = subprocess.run([find_dot(), f"-T{fmt}"], input=source.encode("utf-8"),
                              capture_output=True, timeout=120, check=False)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise NaspError(f"running dot failed: {e}", _INSTALL_HINT) from None
    if proc.returncode != 0 or not proc.stdout:
        err = proc.stderr.decode("utf-8", "replace").strip() or f"exit status {proc.returncode}"
        raise NaspError(f"dot could not render the cell diagram: {err}",
                        "check the genotype; write a .dot file to inspect the source")
    return proc.stdout


def render_svg(source: str) -> str:
    """SVG text without XML prolog, comments and DOCTYPE (it names an external DTD), for HTML."""
    svg = render(source, "svg").decode("utf-8")
    svg = re.sub(r"<\?xml[^>]*\?>\s*", "", svg)
    svg = re.sub(r"<!--.*?-->\s*", "", svg, flags=re.S)
    return re.sub(r"<!DOCTYPE[^>]*>\s*", "", svg)


# --- files --------------------------------------------------------------------------------------

def draw_genotype(genotype: dict[str, Any], out: str | os.PathLike[str], *,
                  split: bool = False, engine: str = "matplotlib") -> list[Path]:
    """Write the diagram to ``out``, its format chosen by the suffix (.svg .png .pdf .dot .gv).

    With ``split`` each cell type goes to its own file, ``<stem>-<cell><suffix>``. ``engine``
    "matplotlib" (the default) needs nothing beyond nasp's dependencies; "graphviz" lays the
    cells out with the ``dot`` program and fails, before writing anything, where it is missing.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in RENDER_SUFFIXES and suffix not in SOURCE_SUFFIXES:
        raise NaspError(f"cannot tell the diagram format from {out.name!r}",
                        "end the output name with one of: "
                        + ", ".join([*RENDER_SUFFIXES, *SOURCE_SUFFIXES]))
    if engine not in ENGINES:
        raise NaspError(f"unknown diagram engine {engine!r}", f"choose from {', '.join(ENGINES)}")
    cells = cell_types(genotype)
    if suffix in RENDER_SUFFIXES and engine == "graphviz":
        find_dot()  # fail before writing anything
    targets = ([(out.with_name(f"{out.stem}-{c}{out.suffix}"), [c]) for c in cells] if split
               else [(out, cells)])
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for path, chosen in targets:
        if suffix in SOURCE_SUFFIXES:
            path.write_text(dot_source(genotype, chosen), encoding="utf-8")
        elif engine == "graphviz":
            path.write_bytes(render(dot_source(genotype, chosen), RENDER_SUFFIXES[suffix]))
        else:
            from nasp.viz.cell_figure import cell_figure
            from nasp.viz.figures import save_figure

            fig = cell_figure(cell_graphs(genotype, chosen))
            (written_path,) = save_figure(fig, path.with_suffix(""), (RENDER_SUFFIXES[suffix],))
            if written_path != path:  # e.g. a suffix in upper case
                written_path.replace(path)
        written.append(path)
    return written


def genotype_text(genotype: dict[str, Any]) -> str:
    """A readable plain-text listing, for when no diagram is wanted."""
    lines = []
    for cell in cell_types(genotype):
        graph = cell_graph(genotype, cell)
        out = ", ".join(graph.state_label(s) for s in graph.output)
        lines.append(f"{graph.title} (output = {out}):")
        for label, edges in graph.nodes:
            lines += [f"  node {label} <- {graph.state_label(s)}: {op}"
                      for op, s in edges if op is not None]
    return "\n".join(lines)
