"""The model-size regularizer of NASP (paper §3.3).

R(A) = λ · Σ_k (p_k / Σ_j p_j) · ‖A[:, k]‖², with p_k the parameter count of op k. NASP's
release applies it to normal cells only; we apply it to every cell type, so reduction cells
are steered towards small ops too when λ > 0.
"""

from __future__ import annotations

import torch

from nasp.ops import OPS, op_param_count
from nasp.spaces.base import CellSpec


def op_costs(cell: CellSpec) -> torch.Tensor:
    """p_k / Σ_j p_j for the ops of a cell (zeros when no op has parameters, e.g. RNN cells)."""
    counts = torch.tensor(
        [float(op_param_count(op)) if op in OPS else 0.0 for op in cell.ops]
    )
    total = counts.sum()
    return counts / total if total > 0 else counts


def size_penalty(
    weights: dict[str, torch.Tensor], costs: dict[str, torch.Tensor], lam: float
) -> torch.Tensor | None:
    """λ Σ_cells Σ_k c_k ‖W[:, k]‖²; ``None`` when λ = 0 so no graph is built at all."""
    if lam == 0:
        return None
    total = None
    for name, w in weights.items():
        term = (w.pow(2).sum(dim=0) * costs[name].to(w.device, w.dtype)).sum()
        total = term if total is None else total + term
    return lam * total
