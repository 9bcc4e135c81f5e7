"""The mixed edge: candidate ops of one edge, combined as the weighting says."""

from __future__ import annotations

import torch
from torch import nn

from nasp.ops import make_op
from nasp.supernet.weighting import PROBE, SKIP


class MixedOp(nn.Module):
    """``s = Σ_k w_k · op_k(x)`` over the ops the plan executes.

    PROBE ops run under ``no_grad``: the product ``w_k · o_k`` still has a gradient for ``w_k``
    (⟨∂L/∂s, o_k⟩), but autograd keeps no graph inside ``op_k`` and never back-propagates through
    it. Returns ``None`` when the plan executes nothing, so the caller can drop the edge."""

    def __init__(self, ops: tuple[str, ...], c: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, c, stride, affine=False) for name in ops)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None, codes: tuple[int, ...]
    ) -> torch.Tensor | None:
        out = None
        for k, code in enumerate(codes):
            if code == SKIP:
                continue
            if code == PROBE:
                with torch.no_grad():
                    y = self.ops[k](x)
            else:
                y = self.ops[k](x)
            if weights is not None:
                y = weights[k] * y
            out = y if out is None else out + y
        return out
