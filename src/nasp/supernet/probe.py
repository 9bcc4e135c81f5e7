"""Architecture gradients of ops that do not run: ⟨∂L/∂s, op(x)⟩, computed in backward.

In NASP's architecture step an unselected op k on edge e has weight Ā[e, k] = 0, so it adds
nothing to the forward value, yet its gradient ⟨∂L/∂s_e, op_k(x_e)⟩ is wanted, and ∂L/∂s_e is
the gradient of the node the edge feeds. ``probe_node`` wraps a node's sum in an identity
function whose backward receives that gradient, runs each probed op once without an autograd
graph, and turns its output straight into one number. Nothing of the probed ops is kept between
forward and backward: the memory of the architecture step is that of the discrete network, and
no backward pass ever goes through a probed op.

Work shared between probes: every tensor a cell probes is wrapped once in a ``ProbeInput``, and
the probes of all nodes that read it share what they compute from it alone (``ProbeInput.memo``):
the ReLU every convolution op starts with, and the batch-normalised pooled map of every pooling
op (parameter-free, so the same on every edge). A cell's 14 edges read only 5 tensors, so the
pools run 5 times instead of 14. The shared values are dropped once the last probe that reads
them has run (nodes are probed one by one, in backward order).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from typing import Any

import torch
from torch import nn

from nasp.compiled import compiler_of
from nasp.supernet.inplace import fresh_in_place


def _flat(t: torch.Tensor) -> torch.Tensor | None:
    """``t`` as a 1-D view in memory order, when it is dense in a standard layout."""
    if t.is_contiguous():
        return t.view(-1)
    if t.dim() == 4 and t.is_contiguous(memory_format=torch.channels_last):
        return t.as_strided((t.numel(),), (1,))  # dense: memory order is a 1-D view
    return None


def dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """⟨a, b⟩ in one pass over memory when both have the same layout (2-3x faster on the CPU
    than ``(a * b).sum()``, which writes and rereads the product)."""
    if a.shape == b.shape and a.stride() == b.stride() and a.dtype == b.dtype:
        fa, fb = _flat(a), _flat(b)
        if fa is not None and fb is not None:
            return torch.dot(fa, fb)
    return torch.sum(a * b)


class ProbeInput:
    """A tensor that probes read, with the values they share (see the module doc)."""

    __slots__ = ("x", "users", "version", "_memo")

    def __init__(self, x: torch.Tensor) -> None:
        self.x = x.detach()
        self.version = x._version
        self.users = 0
        self._memo: dict[Any, Any] = {}

    def memo(self, key: Any, make: Callable[[torch.Tensor], Any]) -> Any:
        """``make(x)``, computed by the first probe that asks for ``key``."""
        value = self._memo.get(key)
        if value is None:
            value = self._memo[key] = make(self.x)
        return value

    def relu(self) -> torch.Tensor:
        return self.memo("relu", torch.relu)

    def changed(self) -> bool:
        """Whether the input was modified in place since the forward pass."""
        return self.x._version != self.version

    def release(self) -> None:
        """One probe reading this input is done; the last one frees the shared values."""
        self.users -= 1
        if self.users <= 0:
            self._memo.clear()


class ProbeGrad:
    """∂L/∂s of the node being probed. It usually arrives as a channel slice of the cell
    output's gradient (the backward of the concatenation), which is dense in no layout; the
    first probe makes a dense copy in its output's layout, and every later one reuses it (as a
    1-D view, so each probe's inner product is one ``torch.dot``)."""

    __slots__ = ("g", "_flat", "_dense")

    def __init__(self, g: torch.Tensor) -> None:
        self.g = g
        self._flat: dict[tuple, torch.Tensor] = {}
        self._dense: dict[torch.memory_format, torch.Tensor] = {}

    def dense(self, fmt: torch.memory_format) -> torch.Tensor:
        """The gradient as a dense tensor in layout ``fmt``, made once (compiled probes take it
        as an input, so every probe of the node reads one layout)."""
        g = self._dense.get(fmt)
        if g is None:
            g = self._dense[fmt] = self.g.contiguous(memory_format=fmt)
        return g

    def dot(self, y: torch.Tensor) -> torch.Tensor:
        key = (y.shape, y.stride(), y.dtype)
        flat_g = self._flat.get(key)
        if flat_g is None:
            g = self.g
            if y.shape != g.shape or y.dtype != g.dtype or _flat(y) is None:
                return dot(g, y)
            if g.stride() != y.stride():
                fmt = torch.channels_last if not y.is_contiguous() else torch.contiguous_format
                g = g.contiguous(memory_format=fmt)
            flat_g = self._flat[key] = _flat(g)
        return torch.dot(flat_g, _flat(y))  # type: ignore[arg-type]


def probe_op(op: nn.Module, inp: ProbeInput, grad: ProbeGrad) -> torch.Tensor:
    """⟨grad, op(inp.x)⟩ without an autograd graph; ops may share work (``op.probe``). With a
    compiler attached (``nasp.compiled``) the op's probe runs compiled, from the shared ReLU
    where the op starts with one (``op.compiled_probe``); ops that set it to None (identity,
    zero) keep their own cheap probe."""
    compiler = compiler_of(op)
    if compiler is not None:
        how = getattr(op, "compiled_probe", "forward")
        if how is not None and inp.x.dim() == 4:
            relu = how == "from_relu"
            fmt = torch.channels_last if (not inp.x.is_contiguous() and inp.x.is_contiguous(
                memory_format=torch.channels_last)) else torch.contiguous_format
            return compiler.probe(op, inp.relu() if relu else inp.x, grad.dense(fmt),
                                  from_relu=relu)
    fast = getattr(op, "probe", None)
    if fast is not None:
        return fast(inp, grad)
    with fresh_in_place(op):  # a user's candidate: its dead intermediates are overwritten
        return grad.dot(op(inp.x))


Probe = tuple[int, int, nn.Module, ProbeInput]


class _NodeProbe(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, total: torch.Tensor, weights: torch.Tensor,
                probes: Sequence[Probe]) -> torch.Tensor:
        ctx.probes = probes
        ctx.weight_shape = weights.shape
        ctx.amp = _autocast_state(total.device.type)
        return total.view_as(total)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        probes, ctx.probes = ctx.probes, None
        g = ProbeGrad(grad)
        values = []
        amp = torch.autocast(ctx.amp[0], dtype=ctx.amp[1]) if ctx.amp else nullcontext()
        with torch.no_grad(), amp:
            for _, _, op, inp in probes:
                if inp.changed():
                    raise RuntimeError("a probed input was modified in place after the forward "
                                       "pass; its architecture gradient would be wrong")
                values.append(probe_op(op, inp, g))
                inp.release()
            grad_w = _scatter(values, [(e, k) for e, k, _, _ in probes], ctx.weight_shape)
        return grad, grad_w, None


def _autocast_state(kind: str) -> tuple[str, torch.dtype] | None:
    """The forward's autocast (probes recompute forward values and must run as it did)."""
    try:
        on, dtype = torch.is_autocast_enabled(kind), torch.get_autocast_dtype(kind)
    except (TypeError, AttributeError):  # torch releases before the device-generic API
        on = torch.is_autocast_cpu_enabled() if kind == "cpu" else torch.is_autocast_enabled()
        dtype = (torch.get_autocast_cpu_dtype() if kind == "cpu"
                 else torch.get_autocast_gpu_dtype())
    return (kind, dtype) if on else None


def _scatter(values: list[torch.Tensor], at: list[tuple[int, int]],
             shape: torch.Size) -> torch.Tensor:
    """A zero (edges, ops) matrix holding ``values`` at ``at``, built by stacking on the device:
    an index tensor made from host lists would be a host-to-device copy (a sync on CUDA)."""
    zero = values[0].new_zeros(())
    table = dict(zip(at, values))
    edges = {e for e, _ in at}
    zero_row = values[0].new_zeros(shape[1])
    rows = [torch.stack([table.get((e, k), zero) for k in range(shape[1])]) if e in edges
            else zero_row for e in range(shape[0])]
    return torch.stack(rows)


def probe_node(total: torch.Tensor, weights: torch.Tensor,
               probes: Sequence[Probe]) -> torch.Tensor:
    """``total`` unchanged; in backward, ``weights.grad[e, k] += ⟨∂L/∂total, op(x)⟩`` for every
    probe ``(e, k, op, inp)`` with ``x = inp.x``. The probed ops' weights must be zero (they add
    nothing here). Register each probe with ``inp.users += 1`` so shared values are freed."""
    if not probes:
        return total
    return _NodeProbe.apply(total, weights, list(probes))
