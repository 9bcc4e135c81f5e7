"""The mixed edge: candidate ops of one edge, combined as the weighting says."""

from __future__ import annotations

import torch
from torch import nn

from nasp.ops import make_op
from nasp.supernet.weighting import RUN


class MixedOp(nn.Module):
    """``s = Σ_k w_k · op_k(x)`` over the ops the plan RUNs.

    PROBE ops are the cell's business (their gradient is computed per node, in backward);
    returns ``None`` when nothing runs, so the caller can drop the edge."""

    def __init__(self, ops: tuple[str, ...], c: int, stride: int) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make_op(name, c, stride, affine=False) for name in ops)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None, codes: tuple[int, ...]
    ) -> torch.Tensor | None:
        out = None
        for k, code in enumerate(codes):
            if code != RUN:
                continue
            y = self.ops[k](x)
            if weights is not None:
                y = weights[k] * y
            out = y if out is None else out + y
        return out
