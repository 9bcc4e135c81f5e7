"""Cell diagrams from a genotype dict, as Graphviz DOT and rendered by the ``dot`` executable.

The diagrams follow the convention of the DARTS and NASP papers so results can be set side by
side with theirs: CNN cells read c_{k-2}, c_{k-1} → nodes 0..3 → c_{k} with every edge labelled
by its op; the recurrent cell reads x_{t}, h_{t-1} → node 0 → nodes 1..8 → h_{t}.

One diagram file holds every cell type of the genotype, each in its own labelled box (a DOT
cluster), because a CNN architecture is the *pair* of cells and one file is easier to put in a
paper or a report; ``split=True`` writes one file per cell type for layouts that want them apart.

``dot`` is an external program (Debian/Ubuntu package ``graphviz``), so it is looked up only
when rendering; writing DOT text (``.dot``/``.gv`` output or :func:`dot_source`) never needs it.
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

RENDER_SUFFIXES = {".svg": "svg", ".png": "png", ".pdf": "pdf"}
SOURCE_SUFFIXES = (".dot", ".gv")
CNN_CELLS = ("normal", "reduce")
_INSTALL_HINT = "install Graphviz: apt-get install graphviz (macOS: brew install graphviz)"
_COLORS = {"input": "#cfe8cf", "node": "#cfe0f5", "output": "#f5e6b8"}


def _shape(cell: str) -> tuple[int, int]:
    """(cell inputs, kept edges per node): CNN cells read two states and keep two edges."""
    return (1, 1) if cell == "recurrent" else (2, 2)


def cell_types(genotype: dict[str, Any], source: str = "genotype") -> list[str]:
    """The cell types of ``genotype`` after checking its shape, so drawing never half-fails.

    Op names are not checked against a search space: a diagram of an op this version of nasp
    does not know is still a correct diagram.
    """
    if not isinstance(genotype, dict):
        raise NaspError(f"{source}: expected a JSON object", "see docs/run-folder.md")
    cells = ["recurrent"] if "recurrent" in genotype else [c for c in CNN_CELLS if c in genotype]
    if not cells:
        raise NaspError(
            f"{source}: no cell found (keys: {', '.join(map(str, genotype)) or 'none'})",
            "a CNN genotype has normal and reduce, a recurrent one has recurrent; "
            "see docs/run-folder.md")
    for cell in cells:
        pairs = genotype[cell]
        inputs, keep = _shape(cell)
        if not isinstance(pairs, list) or not pairs or len(pairs) % keep:
            raise NaspError(f"{source}: {cell!r} must be a list of [op, input] pairs, "
                            f"{keep} per node", "fix the genotype's edge list")
        for e, pair in enumerate(pairs):
            ok = (isinstance(pair, (list, tuple)) and len(pair) == 2
                  and isinstance(pair[0], str) and isinstance(pair[1], int))
            if not ok:
                raise NaspError(f"{source}: {cell}[{e}] = {pair!r} is not an [op, input] pair",
                                "write it as [\"sep_conv_3x3\", 1]")
            node = e // keep
            if not 0 <= pair[1] < inputs + node:
                raise NaspError(
                    f"{source}: {cell}[{e}] (node {node}) takes input {pair[1]}, but only "
                    f"{inputs + node} states exist before that node",
                    "an input index must name a cell input or an earlier node")
    return cells


def _concat(genotype: dict[str, Any], cell: str) -> list[int]:
    inputs, keep = _shape(cell)
    key = "concat" if cell == "recurrent" else f"{cell}_concat"
    default = list(range(inputs, inputs + len(genotype[cell]) // keep))
    value = genotype.get(key, default)
    return [int(n) for n in value] if isinstance(value, list) else default


def _q(text: str) -> str:
    """A DOT string literal; backslashes doubled so Graphviz escapes like \\N stay literal."""
    flat = " ".join(str(text).split())
    return '"' + flat.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _state_label(cell: str, state: int) -> str:
    if cell == "recurrent":
        return str(state)
    return ("c_{k-2}", "c_{k-1}")[state] if state < 2 else str(state - 2)


def _cell_lines(genotype: dict[str, Any], cell: str, indent: str) -> list[str]:
    inputs, keep = _shape(cell)
    pairs = genotype[cell]
    nodes = len(pairs) // keep
    ids = {s: _q(f"{cell}_{s}") for s in range(inputs + nodes)}
    out_id = _q(f"{cell}_out")
    lines = []
    if cell == "recurrent":
        for name, label in (("x", "x_{t}"), ("h", "h_{t-1}")):
            lines.append(f"{indent}{_q(f'{cell}_{name}')} "
                         f"[label={_q(label)}, fillcolor={_q(_COLORS['input'])}];")
        lines.append(f"{indent}{ids[0]} [label=\"0\", fillcolor={_q(_COLORS['node'])}];")
        for name in ("x", "h"):
            lines.append(f"{indent}{_q(f'{cell}_{name}')} -> {ids[0]} [color=gray];")
        out_label = "h_{t}"
    else:
        for s in range(inputs):
            lines.append(f"{indent}{ids[s]} [label={_q(_state_label(cell, s))}, "
                         f"fillcolor={_q(_COLORS['input'])}];")
        out_label = "c_{k}"
    for s in range(inputs, inputs + nodes):
        lines.append(f"{indent}{ids[s]} [label={_q(_state_label(cell, s))}, "
                     f"fillcolor={_q(_COLORS['node'])}];")
    for e, (op, j) in enumerate(pairs):
        target = ids[inputs + e // keep]
        lines.append(f"{indent}{ids[j]} -> {target} [label={_q(op)}];")
    lines.append(f"{indent}{out_id} [label={_q(out_label)}, fillcolor={_q(_COLORS['output'])}];")
    for s in _concat(genotype, cell):
        if s in ids:
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
        lines.append(f"  subgraph {_q('cluster_' + cell)} {{")
        lines.append(f"    label={_q(cell + ' cell')};")
        lines.append('    color="#999999";')
        lines += _cell_lines(genotype, cell, "    ")
        lines.append("  }")
    lines.append("}")
    return "\n".join(lines) + "\n"


def find_dot() -> str:
    """Path of the ``dot`` executable, or a ``NaspError`` saying how to install it."""
    path = shutil.which("dot")
    if path is None:
        raise NaspError("the Graphviz 'dot' program is not on PATH, so cells cannot be drawn",
                        _INSTALL_HINT + "; or write .dot text and render it elsewhere")
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


def draw_genotype(genotype: dict[str, Any], out: str | os.PathLike[str], *,
                  split: bool = False) -> list[Path]:
    """Write the diagram to ``out``, its format chosen by the suffix (.svg .png .pdf .dot .gv).

    With ``split`` each cell type goes to its own file, ``<stem>-<cell><suffix>``.
    """
    out = Path(out)
    suffix = out.suffix.lower()
    if suffix not in RENDER_SUFFIXES and suffix not in SOURCE_SUFFIXES:
        raise NaspError(f"cannot tell the diagram format from {out.name!r}",
                        "end the output name with one of: "
                        + ", ".join([*RENDER_SUFFIXES, *SOURCE_SUFFIXES]))
    cells = cell_types(genotype)
    if suffix in RENDER_SUFFIXES:
        find_dot()  # fail before writing anything
    targets = ([(out.with_name(f"{out.stem}-{c}{out.suffix}"), [c]) for c in cells] if split
               else [(out, cells)])
    out.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for path, chosen in targets:
        text = dot_source(genotype, chosen)
        if suffix in SOURCE_SUFFIXES:
            path.write_text(text, encoding="utf-8")
        else:
            path.write_bytes(render(text, RENDER_SUFFIXES[suffix]))
        written.append(path)
    return written


def genotype_text(genotype: dict[str, Any]) -> str:
    """A readable plain-text listing, for when no diagram can be drawn."""
    lines = []
    for cell in cell_types(genotype):
        inputs, keep = _shape(cell)
        lines.append(f"{cell} cell (output = {_concat(genotype, cell)}):")
        for e, (op, j) in enumerate(genotype[cell]):
            node = _state_label(cell, inputs + e // keep)
            lines.append(f"  node {node} <- {_state_label(cell, j)}: {op}")
    return "\n".join(lines)
