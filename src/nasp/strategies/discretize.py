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

from nasp.spaces.base import CellSpec, SearchSpace
from nasp.spaces.selection import (  # noqa: F401 - the walk lives below the strategies
    Selection,
    genotype_edges,
    genotype_to_selection,
    selection_to_genotype,
)

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


def record_selection(record: Any, space: SearchSpace) -> dict[str, Selection]:
    """Per cell type (label), the selection a record runs (each edge at most once)."""
    out = {}
    for name, edges in record_edges(record, space).items():
        sel = [-1] * space.cells[name].num_edges
        for e, k in edges:
            sel[e] = k
        out[name] = tuple(sel)
    return out


def parse_record(value: Any, space: SearchSpace) -> Any:
    """A record of ``space`` from what a user passes: a dict, a file or run folder, a
    published name (genotypes), or a record."""
    own = getattr(space, "parse_record", None)
    if own is not None:
        return own(value)
    from nasp.genotype import resolve_genotype

    return resolve_genotype(value, space.task)
