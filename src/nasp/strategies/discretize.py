"""The one discretization rule: what NASP trains, evaluates and exports.

Per edge, the op with the largest value wins (ties: the first op); per intermediate node, the
``keep`` incoming edges whose winning values are largest stay (ties: the earlier edge); other
edges are pruned. Returned as a host-side selection (``-1`` = pruned edge) plus the one-hot /
zero matrix Ā on A's device. Runs on the host: one small copy of A per call, no per-element
device work.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from nasp.genotype import Genotype
from nasp.spaces.base import CellSpec

Selection = tuple[int, ...]


def select(values: np.ndarray, cell: CellSpec, exclude: Sequence[int] = ()) -> Selection:
    """Winning op per edge and the kept edges per node, from an (edges, ops) array.

    ``exclude`` lists op columns that may never win (DARTS's derivation skips ``none``)."""
    v = np.asarray(values, dtype=np.float64).copy()
    if exclude:
        v[:, list(exclude)] = -np.inf
    winners = v.argmax(axis=1)  # numpy returns the first maximal index: ties go to the first op
    strength = v[np.arange(len(v)), winners]
    selection = [-1] * cell.num_edges
    for node_edges in cell.node_edges:
        idx = np.array(list(node_edges))
        order = np.argsort(-strength[idx], kind="stable")  # stable: ties keep the earlier edge
        for e in idx[order[: cell.keep]]:
            selection[int(e)] = int(winners[e])
    return tuple(selection)


def one_hot(selection: Selection, num_ops: int, like: torch.Tensor) -> torch.Tensor:
    """Ā: one-hot rows for kept edges, zero rows for pruned ones, on ``like``'s device."""
    bar = torch.zeros(len(selection), num_ops)
    for e, k in enumerate(selection):
        if k >= 0:
            bar[e, k] = 1.0
    return bar.to(device=like.device, dtype=like.dtype, non_blocking=True)


def discretize(a: torch.Tensor, cell: CellSpec) -> tuple[torch.Tensor, Selection]:
    """Ā = prox(A): the discrete architecture of continuous parameters A."""
    sel = select(a.detach().float().cpu().numpy(), cell)
    return one_hot(sel, cell.num_ops, a), sel


def selection_to_genotype(selections: dict[str, Selection], cells: dict[str, CellSpec]) -> Genotype:
    """The genotype of a selection: (op, input) of each kept edge, nodes in order."""
    pairs, concat = {}, {}
    for name, cell in cells.items():
        sel = selections[name]
        out = []
        for node_edges in cell.node_edges:
            for e in node_edges:
                if sel[e] >= 0:
                    out.append((cell.ops[sel[e]], cell.edges[e][1]))
        pairs[name] = tuple(out)
        concat[name] = cell.concat
    return Genotype(pairs, concat)


def genotype_to_selection(genotype: Genotype, cells: dict[str, CellSpec]) -> dict[str, Selection]:
    """The inverse mapping, for training a fixed genotype on a supernet (random search, tests)."""
    from nasp.errors import NaspError

    out = {}
    for name, cell in cells.items():
        sel = [-1] * cell.num_edges
        pairs = list(genotype.cells[name])
        for i, node_edges in enumerate(cell.node_edges):
            for op, j in pairs[i * cell.keep:(i + 1) * cell.keep]:
                if op not in cell.ops:
                    raise NaspError(f"op {op!r} is not in this space's {name} cell",
                                    f"use one of {', '.join(cell.ops)}")
                sel[node_edges[j]] = cell.ops.index(op)
        out[name] = tuple(sel)
    return out
