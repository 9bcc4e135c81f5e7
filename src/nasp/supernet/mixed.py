"""The mixed edge: candidate ops of one edge, combined as the weighting says."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasp.compiled import Compiler, compiler_of
from nasp.ops import make_op
from nasp.supernet.weighting import RUN


class MixedOp(nn.Module):
    """``s = Σ_k w_k · op_k(x)`` over the ops the plan RUNs.

    PROBE ops are the cell's business (their gradient is computed per node, in backward);
    returns ``None`` when nothing runs, so the caller can drop the edge. The ``none`` op is
    left out of the sum (it adds zeros, and its weight's gradient ⟨∂L/∂s, 0⟩ is zero either
    way) unless it is all the edge runs. ``make`` builds an op from its name (default: DARTS's
    registry; nb201 cells pass the benchmark's)."""

    def __init__(self, ops: tuple[str, ...], c: int, stride: int,
                 make: Callable[..., nn.Module] = make_op) -> None:
        super().__init__()
        self.ops = nn.ModuleList(make(name, c, stride, affine=False) for name in ops)
        self.zero = tuple(bool(getattr(op, "is_zero", False)) for op in self.ops)

    def forward(
        self, x: torch.Tensor, weights: torch.Tensor | None, codes: tuple[int, ...]
    ) -> torch.Tensor | None:
        compiler = compiler_of(self) if torch.is_grad_enabled() else None
        if compiler is not None and sum(c == RUN for c in codes) > 1:
            return compiler.mixed(self, x, weights, codes)  # DARTS: the edge is one graph
        return self.forward_eager(x, weights, codes, compiler)

    def forward_eager(self, x: torch.Tensor, weights: torch.Tensor | None,
                      codes: tuple[int, ...], compiler: Compiler | None = None
                      ) -> torch.Tensor | None:
        """The sum, op by op; with ``compiler`` each op that is worth it runs compiled (one
        graph per op kind and shape, whatever the edge: NASP's selected ops)."""
        out, skipped = None, None
        for k, code in enumerate(codes):
            if code != RUN:
                continue
            if self.zero[k]:
                skipped = k
                continue
            op = self.ops[k]
            y = op(x) if compiler is None or getattr(op, "trivial", False) else \
                compiler.forward(op, x)
            if weights is None:
                out = y if out is None else out + y
            elif out is None:
                out = weights[k] * y
            else:  # out + w_k * y in one pass
                out = torch.addcmul(out, weights[k], y)
        if out is None and skipped is not None:
            out = self.ops[skipped](x)
            if weights is not None:
                out = weights[skipped] * out
        return out
