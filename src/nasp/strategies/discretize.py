"""The one discretization rule (what NASP trains, evaluates and exports) and the one walk between
genotypes and (edge, op) selections.

Per edge, the op with the largest value wins; per intermediate node, the ``keep`` incoming edges
whose winning values are largest stay (every edge where the space keeps all); other edges are
pruned. Only ``cell.final_ops`` may win an edge (``none`` is never final where edges are chosen:
``CellSpec.final_ops``).

Ties. Once entries of A reach the box's edge (1, or 0), several ops of an edge, or several edges
of a node, hold exactly the same value. Breaking such ties by position would hand them to the
first op and the earliest edge, the very bias a seeded initialisation removes. Ties are broken by
a seeded random priority instead (``tie_priority``): fixed for a run, so the choice is
deterministic and does not flicker between steps, but independent of position.

Runs on the host: one small copy of A per call, no per-element device work.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.spaces.base import CellSpec, SearchSpace

Selection = tuple[int, ...]
Priority = tuple[np.ndarray, np.ndarray]  # (edges, ops) op ranks, (edges,) edge ranks


def tie_priority(cells: Mapping[str, CellSpec], seed: int) -> dict[str, Priority]:
    """Per cell type, random ranks of the ops of each edge and of the edges (higher wins)."""
    rng = np.random.default_rng([int(seed), 0x71E5])
    return {name: (np.argsort(rng.random((c.num_edges, c.num_ops)), axis=1).astype(np.float64),
                   rng.permutation(c.num_edges).astype(np.float64))
            for name, c in cells.items()}


def _position_priority(cell: CellSpec) -> Priority:
    """Ties to the first op and the earliest edge (DARTS's convention)."""
    ops = -np.tile(np.arange(cell.num_ops, dtype=np.float64), (cell.num_edges, 1))
    return ops, -np.arange(cell.num_edges, dtype=np.float64)


def select(values: np.ndarray, cell: CellSpec, priority: Priority | None = None) -> Selection:
    """Winning op per edge and the kept edges per node, from an (edges, ops) array."""
    v = np.full(np.shape(values), -np.inf)
    final = list(cell.final_ops)
    v[:, final] = np.asarray(values, dtype=np.float64)[:, final]
    op_rank, edge_rank = priority if priority is not None else _position_priority(cell)
    tied = v == v.max(axis=1, keepdims=True)
    winners = np.where(tied, op_rank, -np.inf).argmax(axis=1)
    strength = v[np.arange(len(v)), winners]
    selection = [-1] * cell.num_edges
    for i, node_edges in enumerate(cell.node_edges):
        idx = np.array(list(node_edges))
        order = np.lexsort((-edge_rank[idx], -strength[idx]))  # strength first, then rank
        for e in idx[order[: cell.kept(i)]]:
            selection[int(e)] = int(winners[e])
    return tuple(selection)


def one_hot(selection: Selection, num_ops: int, like: torch.Tensor) -> torch.Tensor:
    """Ā: one-hot rows for kept edges, zero rows for pruned ones, on ``like``'s device."""
    bar = torch.zeros(len(selection), num_ops)
    for e, k in enumerate(selection):
        if k >= 0:
            bar[e, k] = 1.0
    return bar.to(device=like.device, dtype=like.dtype, non_blocking=True)


def discretize(a: torch.Tensor, cell: CellSpec,
               priority: Priority | None = None) -> tuple[torch.Tensor, Selection]:
    """Ā = prox(A): the discrete architecture of continuous parameters A."""
    sel = select(a.detach().float().cpu().numpy(), cell, priority)
    return one_hot(sel, cell.num_ops, a), sel


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


# --- records of any space --------------------------------------------------------------------
# A space may keep its own record of an architecture (a user model's label -> choice dict,
# ``nasp.spaces.model.ModelSpace``): it then defines ``record``, ``record_edges`` and
# ``parse_record``. The built-in spaces' record is the genotype.

def to_record(selections: Mapping[str, Selection], space: SearchSpace) -> Any:
    """The record (a ``Genotype``, or the space's own) of a selection."""
    own = getattr(space, "record", None)
    return own(selections) if own is not None else selection_to_genotype(selections, space.cells)


def record_edges(record: Any, space: SearchSpace) -> dict[str, list[tuple[int, int]]]:
    """Per cell type (label), the (edge, op column) pairs a record runs; ``NaspError`` when the
    record does not fit the space."""
    own = getattr(space, "record_edges", None)
    return own(record) if own is not None else genotype_edges(record, space.cells)


def parse_record(value: Any, space: SearchSpace) -> Any:
    """A record of ``space`` from what a user passes: a dict, a file or run folder, a
    published name (genotypes), or a record."""
    own = getattr(space, "parse_record", None)
    if own is not None:
        return own(value)
    from nasp.genotype import resolve_genotype

    return resolve_genotype(value, space.task)
