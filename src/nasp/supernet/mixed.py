"""The mixed edge: candidate ops of one edge, combined as the weighting says."""

from __future__ import annotations

from collections.abc import Callable, Sequence

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
        if compiler is None:
            return mix(self.ops, self.zero, lambda op: op(x), weights, codes)
        return mix(self.ops, self.zero, lambda op: op(x) if getattr(op, "trivial", False)
                   else compiler.forward(op, x), weights, codes)


def mix(ops: Sequence[nn.Module], zero: Sequence[bool], call: Callable[[nn.Module], torch.Tensor],
        weights: torch.Tensor | None, codes: Sequence[int]) -> torch.Tensor | None:
    """``Σ_k w_k · call(ops[k])`` over the ops ``codes`` RUN (unit weights when ``weights`` is
    None), ``zero`` ops left out unless nothing else runs; ``None`` when nothing runs. The one
    weighted sum of a cell's mixed edge and of a user model's ``Choice``."""
    out, skipped = None, None
    for k, code in enumerate(codes):
        if code != RUN:
            continue
        if zero[k]:
            skipped = k
            continue
        y = call(ops[k])
        if weights is None:
            out = y if out is None else out + y
        elif out is None:
            out = weights[k] * y
        else:  # out + w_k * y in one pass
            out = torch.addcmul(out, weights[k], y)
    if out is None and skipped is not None:
        out = call(ops[skipped])
        if weights is not None:
            out = weights[skipped] * out
    return out
