"""Architecture gradients of ops that do not run: ⟨∂L/∂s, op(x)⟩, computed in backward.

In NASP's architecture step an unselected op k on edge e has weight Ā[e, k] = 0, so it adds
nothing to the forward value, yet its gradient ⟨∂L/∂s_e, op_k(x_e)⟩ is wanted, and ∂L/∂s_e is
the gradient of the node the edge feeds. ``probe_node`` wraps a node's sum in an identity
function whose backward receives that gradient, runs each probed op once without an autograd
graph, and turns its output straight into one number. Nothing of the probed ops is kept between
forward and backward: the memory of the architecture step is that of the discrete network, and
no backward pass ever goes through a probed op.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn


class _NodeProbe(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, total: torch.Tensor, weights: torch.Tensor, probes: Any,
                *inputs: torch.Tensor) -> torch.Tensor:
        ctx.probes = probes
        ctx.save_for_backward(*inputs)
        ctx.weight_shape = weights.shape
        return total.view_as(total)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        inputs = ctx.saved_tensors
        grad_w = grad.new_zeros(ctx.weight_shape)
        with torch.no_grad():
            for (edge, k, op), x in zip(ctx.probes, inputs):
                grad_w[edge, k] = torch.sum(grad * op(x))
        return (grad, grad_w, None) + (None,) * len(inputs)


def probe_node(
    total: torch.Tensor,
    weights: torch.Tensor,
    probes: Sequence[tuple[int, int, nn.Module, torch.Tensor]],
) -> torch.Tensor:
    """``total`` unchanged; in backward, ``weights.grad[e, k] += ⟨∂L/∂total, op(x)⟩`` for every
    probe ``(e, k, op, x)``. The probed ops' weights must be zero (they add nothing here)."""
    if not probes:
        return total
    meta = [(e, k, op) for e, k, op, _ in probes]
    xs = [x.detach() for _, _, _, x in probes]
    return _NodeProbe.apply(total, weights, meta, *xs)
