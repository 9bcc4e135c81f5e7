"""What a discrete cell is, below every layer that searches, measures or builds one: a
selection (the op column each edge runs, -1 for a pruned edge), which of its edges run and
reach the output, and the one walk between selections and genotypes.

Strategies discretise into selections (``nasp.strategies.discretize``), cost models charge
their running edges (``nasp.cost_model``), evaluation networks skip their dead ends
(``nasp.models.nb201``): all of them read a cell through these functions, so they agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.spaces.base import CellSpec

Selection = tuple[int, ...]
DEAD_ENDS = ("cost", "free")  # does an op whose output cannot reach the cell output run?


def live_edges(selection: Selection, cell: CellSpec, dead_ends: str) -> list[int]:
    """The edges of a discrete cell that run: kept (``selection[e] >= 0``), not ``none`` and,
    with ``dead_ends="free"``, feeding a node whose value reaches the cell output."""
    runs = [sel >= 0 and cell.ops[sel] != "none" for sel in selection]
    if dead_ends == "free":
        states = cell.inputs + cell.nodes
        reach = [False] * states
        for n in cell.concat:
            reach[n] = True
        # nodes in reverse order: a node reaches the output if a running edge carries it to one
        for e in reversed(range(cell.num_edges)):
            node, j = cell.edges[e]
            if runs[e] and reach[cell.inputs + node]:
                reach[j] = True
        runs = [r and reach[cell.inputs + cell.edges[e][0]] for e, r in enumerate(runs)]
    elif dead_ends != "cost":
        raise ValueError(f"dead_ends must be one of {DEAD_ENDS}, not {dead_ends!r}")
    return [e for e, r in enumerate(runs) if r]


def connected(selection: Selection, cell: CellSpec) -> bool:
    """Whether the cell's output depends on its input: a path of running ops (not ``none``)
    from an input node to an output node. A cell without one computes a constant, whatever
    the image (NAS-Bench-201 scores such cells at chance), so no budget ever picks one."""
    reach = [j < cell.inputs for j in range(cell.inputs + cell.nodes)]
    for e, (node, j) in enumerate(cell.edges):
        k = selection[e]
        if k >= 0 and cell.ops[k] != "none" and reach[j]:
            reach[cell.inputs + node] = True
    return any(reach[n] for n in cell.concat)


def useful_edges(selection: Selection, cell: CellSpec) -> list[int]:
    """The running edges on a path from an input node to the cell output: the ones whose op
    changes what the cell computes. An op fed only zeros (its input node has no running
    edge in) or feeding a dead end contributes nothing, whether or not it costs time."""
    n = cell.inputs + cell.nodes
    runs = [k >= 0 and cell.ops[k] != "none" for k in selection]
    fed = [j < cell.inputs for j in range(n)]
    for e, (node, j) in enumerate(cell.edges):
        if runs[e] and fed[j]:
            fed[cell.inputs + node] = True
    alive = set(live_edges(selection, cell, "free"))
    return [e for e in sorted(alive) if fed[cell.edges[e][1]]]


def selection_to_genotype(selections: Mapping[str, Selection],
                          cells: Mapping[str, CellSpec]) -> Genotype:
    """The genotype of a selection: (op, input) of each kept edge, nodes in order."""
    pairs, concat = {}, {}
    for name, cell in cells.items():
        sel = selections[name]
        pairs[name] = tuple((cell.ops[sel[e]], cell.edges[e][1])
                            for node_edges in cell.node_edges for e in node_edges if sel[e] >= 0)
        concat[name] = cell.concat
    return Genotype(pairs, concat)


def genotype_edges(genotype: Genotype, cells: Mapping[str, CellSpec]
                   ) -> dict[str, list[tuple[int, int]]]:
    """Per cell type, the (edge, op column) pairs a genotype runs; raises ``NaspError`` when the
    genotype does not fit the space (another cell shape, an op the space lacks). The genotype's
    own walk (:meth:`Genotype.edges`) reads its nodes, shaped by the space's ``CellSpec``."""
    out = {}
    for name, cell in cells.items():
        if name not in genotype.cells:
            raise NaspError(f"the genotype has no {name!r} cell (it has "
                            f"{', '.join(genotype.cells)})", "use a genotype of this space")
        pairs = list(genotype.cells[name])
        if len(pairs) != cell.num_kept:
            raise NaspError(f"the genotype's {name!r} cell has {len(pairs)} edges, this space "
                            f"needs {cell.num_kept}", "use a genotype of this space")
        if tuple(genotype.concat[name]) != cell.concat:
            raise NaspError(f"the genotype's {name!r} cell combines nodes "
                            f"{list(genotype.concat[name])}; this space's cells combine "
                            f"{list(cell.concat)}", "train it with `nasp train` instead")
        edges = []
        for i, j, op in genotype.edges(name, [cell.kept(n) for n in range(cell.nodes)]):
            if op not in cell.ops:
                raise NaspError(f"op {op!r} of the genotype is not in this space's {name} "
                                "cell", f"use a space whose {name} cell has {op!r} (it has "
                                f"{', '.join(cell.ops)})")
            if not 0 <= j < len(cell.node_edges[i]):
                raise NaspError(f"node {i} of the genotype's {name!r} cell takes input {j}, "
                                "which does not exist there", "fix the genotype")
            edges.append((cell.node_edges[i][j], cell.ops.index(op)))
        out[name] = edges
    return out


def genotype_to_selection(genotype: Genotype,
                          cells: Mapping[str, CellSpec]) -> dict[str, Selection]:
    """The selection of a genotype that uses each edge at most once."""
    out = {}
    for name, edges in genotype_edges(genotype, cells).items():
        sel = [-1] * cells[name].num_edges
        for e, k in edges:
            if sel[e] >= 0:
                raise NaspError(f"the genotype's {name!r} cell uses one input of a node twice",
                                "a selection holds one op per edge")
            sel[e] = k
        out[name] = tuple(sel)
    return out
