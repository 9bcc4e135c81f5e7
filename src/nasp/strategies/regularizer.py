"""The cost regularizer of NASP (paper §3.3), for any per-operation cost.

R = λ Σ_cells Σ_{e,k} c[e, k] · W[e, k]², with W the weighting a strategy charges (Ā for NASP and
PA, softmax(α) for DARTS, ASAP's mixture) and c the normalised cost of op k on edge e:

* raw costs: ``params`` - the op's parameters at width 12 and the edge's stride, batch norm
  excluded (the release's counts: sep_conv_3x3 504, conv_3x3 1296; at stride 2 a skip connection
  is a factorized reduce, 144, so λ acts on reduction cells too); ``madds`` and ``latency`` - a
  ``nasp profile`` cost table, summed over every cell of the type (A is shared by them all);
* normalisation (written beside λ in the docs): c = raw / (mean over the cell's edges of Σ_k raw),
  so an edge's costs sum to 1 on average whatever the unit. Where every edge is alike (normal
  cells) this is exactly the release's p_k / Σ_j p_j; λ keeps its meaning across cost kinds.
  A cell type whose ops cost nothing (recurrent cells) gets zeros.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch

from nasp.ops import op_param_count
from nasp.registry import Registry
from nasp.spaces.base import CellSpec

PARAM_WIDTH = 12  # the release's width for parameter counts


def param_costs(cell: CellSpec, registry: Registry | None) -> torch.Tensor:
    """Raw parameter costs (edges, ops) at the release's width and each edge's stride; ops of
    the space's ``registry`` (none: every op costs 0, e.g. recurrent activations)."""
    cache: dict[tuple[str, int], float] = {}
    rows = []
    for e in range(cell.num_edges):
        stride = cell.stride(e)
        row = []
        for op in cell.ops:
            if (op, stride) not in cache:
                cache[op, stride] = float(op_param_count(op, PARAM_WIDTH, stride, registry)) \
                    if registry is not None and op in registry else 0.0
            row.append(cache[op, stride])
        rows.append(row)
    return torch.tensor(rows, dtype=torch.float64)


def normalise(raw: torch.Tensor) -> torch.Tensor:
    """raw / mean over edges of the per-edge sum (zeros stay zeros)."""
    scale = raw.sum(dim=1).mean()
    return (raw / scale if scale > 0 else torch.zeros_like(raw)).float()


def normalise_jointly(raw: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Every cell type (a user model's choice) over one scale: raw / the mean, over the edges
    that cost anything, of an edge's summed costs. Normalising each choice on its own would
    charge a choice between two tiny layers as much as one between two large ones."""
    sums = [row.sum() for r in raw.values() for row in r if row.sum() > 0]
    scale = float(torch.stack(sums).mean()) if sums else 0.0
    return {name: (r / scale if scale > 0 else torch.zeros_like(r)).float()
            for name, r in raw.items()}


def cost_penalty(weights: Mapping[str, torch.Tensor], costs: Mapping[str, torch.Tensor],
                 lam: float) -> torch.Tensor | None:
    """λ Σ c ⊙ W²; ``None`` when λ = 0, so no graph is built at all."""
    if lam == 0 or not costs:
        return None
    total = None
    for name, w in weights.items():
        term = (w.pow(2) * costs[name].to(w.device, w.dtype)).sum()
        total = term if total is None else total + term
    return lam * total
