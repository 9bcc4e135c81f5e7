"""What a strategy hands a supernet: per cell type, edge weights and which ops to execute.

The supernet never knows which strategy made a weighting. A ``CellWeighting`` says, for every
(edge, op), one of three things:

* ``RUN``   - execute the op with an autograd graph (its weights get gradients);
* ``PROBE`` - the op's weight is zero in this weighting, so it adds nothing to the forward
              value; only the gradient with respect to its weight, ⟨∂L/∂s_e, op_k(x_e)⟩, is
              wanted (NASP's lean architecture step). A supernet computes it without ever
              back-propagating through the op: the CNN supernet runs the op once, without a
              graph, inside backward (``supernet/probe.py``);
* ``SKIP``  - do not execute the op at all.

``weights`` is the (edges, ops) tensor that scales each executed op's output; ``None`` means
"unit weight on every executed op" (a discrete architecture runs its ops without a multiply).
The plan lives on the host as tuples so the forward pass branches without device syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

SKIP, RUN, PROBE = 0, 1, 2

Plan = tuple[tuple[int, ...], ...]


@dataclass(frozen=True)
class CellWeighting:
    weights: torch.Tensor | None
    plan: Plan


Weighting = dict[str, CellWeighting]


def dense_plan(num_edges: int, num_ops: int) -> Plan:
    """Every op of every edge runs with a graph (DARTS)."""
    return tuple((RUN,) * num_ops for _ in range(num_edges))


def masked_plan(alive: Sequence[Sequence[bool]]) -> Plan:
    """Only ops marked alive run (ASAP after pruning)."""
    return tuple(tuple(RUN if a else SKIP for a in row) for row in alive)


def selection_plan(selection: Sequence[int], num_ops: int, probe: bool = False) -> Plan:
    """One op per kept edge runs; ``selection[e] = -1`` marks a pruned edge.

    With ``probe`` every other (edge, op), pruned edges included, is executed without a graph so
    its architecture gradient exists: a pruned edge can win back its place later."""
    rest = PROBE if probe else SKIP
    return tuple(
        tuple(RUN if k == sel else rest for k in range(num_ops)) for sel in selection
    )
