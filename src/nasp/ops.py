"""Candidate operations of CNN cells: one registry, ``name -> factory(C, stride, affine)``.

Adding an operation is one function decorated with ``@OPS.register("name")``. Search cells
build every op with ``affine=False`` (the architecture weights play the role of the BN scale);
evaluation networks use ``affine=True``. Definitions follow DARTS/NASP (see REFERENCE.md).

Speed (issue 14). Every op keeps its input's memory format (channels-last stays channels-last).
Where torch's CPU kernels are slow, the CPU path computes the same function another way:
average pooling is a box-filter depthwise convolution, max pooling without autograd is a
separable max, and dilated depthwise convolutions take their gradients from forward
convolutions. Other devices run torch's own kernels. Parameters and state-dict keys are those of
the plain torch modules, so checkpoints do not depend on the device that wrote them.

Probing (NASP's architecture step, ``supernet/probe.py``): an op may define
``probe(inp, grad) -> ⟨grad, op(inp.x)⟩``, computed without an autograd graph. ``inp.relu()``
and ``inp.memo(key, make)`` share work between ops fed by the same tensor (the leading ReLU of
every convolution op, the pooled map of every pooling op); ``grad.dot(y)`` is the inner
product. Ops without it are probed as ``grad.dot(op(inp.x))``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nasp.registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("operation", "--space (or a genotype) with operations")


_FAST = [True]


def fast_paths() -> bool:
    """Whether the CPU fast paths of this file may run: not inside ``module_by_module`` and not
    while a graph is being traced or exported (ONNX, torch.export), which want plain ops."""
    return _FAST[0] and not torch.jit.is_tracing() and not torch.compiler.is_compiling()


def fast_gradients() -> bool:
    """Whether the depthwise convolution may take its CPU gradients from forward convolutions
    (``DepthwiseConv2d``): as ``fast_paths``, but also inside torch.compile, which traces the
    custom autograd functions into its graphs (torch's own depthwise backward is what they
    avoid, 4-40x slower); never while exporting or tracing."""
    exporting = getattr(torch.compiler, "is_exporting", lambda: False)()
    return _FAST[0] and not torch.jit.is_tracing() and not exporting


@contextmanager
def module_by_module() -> Iterator[None]:
    """Run every op layer by layer through its torch modules, without the fused paths of this
    file (BN folded into a convolution in evaluation, FactorizedReduce as one convolution):
    for forward hooks that count or inspect layers (``count_flops``)."""
    _FAST[0] = False
    try:
        yield
    finally:
        _FAST[0] = True


def memory_format_of(x: torch.Tensor) -> torch.memory_format:
    """The layout new tensors made from ``x`` should have (channels-last or contiguous)."""
    if (x.dim() == 4 and not x.is_contiguous()
            and x.is_contiguous(memory_format=torch.channels_last)):
        return torch.channels_last
    return torch.contiguous_format


class _AfterReLU(nn.Sequential):
    """A block that starts with a ReLU. ``from_relu(relu(x)) == forward(x)``: callers that
    feed several such blocks the same ``x`` (a cell's input, a node read by several edges)
    compute and keep ``relu(x)`` once. ``probe`` does the same for NASP's probes."""

    compiled_probe = "from_relu"  # a compiled probe starts from the shared ReLU

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_relu(self[0](x))

    def from_relu(self, r: torch.Tensor) -> torch.Tensor:
        *body, conv, bn = list(self)[1:]
        for module in body:
            r = module(r)
        if fast_paths() and isinstance(conv, nn.Conv2d) and uses_running_stats(bn):
            return conv_bn_eval(conv.weight, bn, r, conv.stride, conv.padding, conv.dilation,
                                conv.groups)
        return bn(conv(r))

    def probe(self, inp: Any, grad: Any) -> torch.Tensor:
        steps = self.__dict__.get("_probe_steps")
        if steps is None:
            steps = self.__dict__["_probe_steps"] = _probe_steps(self)
        if steps and fast_paths() and all(not m.track_running_stats and m.training
                                          for kind, m in steps if kind is _BN):
            return grad.dot(_run_steps(steps, inp.relu()))
        return grad.dot(self.from_relu(inp.relu()))


# Probes run ~700 small ops per architecture step, each a chain of module calls whose Python
# (``__call__``, hooks, BN's mode checks) cost about as much as the arithmetic at small batches
# (measured: 48 ms of a 184 ms architecture step at batch 2). ``_AfterReLU.probe`` runs the same
# kernels as a flat list of torch calls instead, when every BN in it normalises with batch
# statistics and updates nothing (``frozen_batch_stats``, as in every architecture step).
_CONV, _BN, _RELU = "conv", "bn", "relu"


def _probe_steps(block: nn.Module) -> tuple[tuple[str, Any], ...]:
    """``block.from_relu`` as (kind, module) steps; empty when some layer is not a plain
    conv, BN or ReLU (the block then runs through its modules)."""
    steps: list[tuple[str, Any]] = []

    def add(seq: nn.Module, skip_relu: bool) -> bool:
        for i, m in enumerate(seq):
            if isinstance(m, _AfterReLU):
                if not add(m, skip_relu=skip_relu and i == 0):
                    return False
            elif isinstance(m, nn.ReLU):
                if not (skip_relu and i == 0):
                    steps.append((_RELU, m))
            elif isinstance(m, nn.Conv2d) and m.padding_mode == "zeros":
                steps.append((_CONV, m))
            elif isinstance(m, nn.BatchNorm2d):
                steps.append((_BN, m))
            else:
                return False
        return True

    return tuple(steps) if add(block, skip_relu=True) else ()


def _run_steps(steps: tuple[tuple[str, Any], ...], r: torch.Tensor) -> torch.Tensor:
    for kind, m in steps:
        if kind is _CONV:
            r = torch.conv2d(r, m.weight, m.bias, m.stride, m.padding, m.dilation, m.groups)
        elif kind is _BN:
            r = F.batch_norm(r, None, None, m.weight, m.bias, True, 0.0, m.eps)
        else:
            r = torch.relu(r)
    return r


def uses_running_stats(bn: nn.Module) -> bool:
    """True for a BN that normalises with its running statistics (evaluation mode)."""
    return (isinstance(bn, nn.BatchNorm2d) and not bn.training
            and bn.running_mean is not None and bn.running_var is not None)


def conv_bn_eval(weight: torch.Tensor, bn: nn.BatchNorm2d, x: torch.Tensor,
                 stride: Any = 1, padding: Any = 0, dilation: Any = 1,
                 groups: int = 1) -> torch.Tensor:
    """``bn(conv(x))`` for a BN in evaluation mode, as one convolution: the BN is an affine map
    per channel, folded into the filter and a bias (one pass over the output fewer)."""
    scale = torch.rsqrt(bn.running_var + bn.eps)  # type: ignore[operator]
    shift = -bn.running_mean * scale  # type: ignore[operator]
    if bn.weight is not None:
        scale = scale * bn.weight
        shift = shift * bn.weight + bn.bias
    w = weight * scale.view(-1, 1, 1, 1).to(weight.dtype)
    return F.conv2d(x, w, shift.to(weight.dtype), stride, padding, dilation, groups)


# --- depthwise convolution ------------------------------------------------------------------

def _dw_grad_input(g: torch.Tensor, w: torch.Tensor, size: tuple[int, int],
                   stride: tuple[int, int], padding: tuple[int, int],
                   dilation: tuple[int, int]) -> torch.Tensor | None:
    """∂L/∂x of a depthwise convolution as a forward convolution with the flipped filter.

    Output row ``o`` read padded input rows ``o·s + d·i``; spreading ``g`` onto those rows
    (zeros between them when s > 1) and correlating with the flipped filter gives every input
    row's gradient. ``None`` where the padding is wider than the filter reach (never for ops
    here); the caller then falls back to torch's kernel."""
    k = w.shape[-2:]
    reach = [d * (kk - 1) for d, kk in zip(dilation, k)]
    lead = [r - p for r, p in zip(reach, padding)]
    if min(lead) < 0:
        return None
    wf = w.flip(-2, -1)
    c = w.shape[0]
    if stride == (1, 1) and all(a == r - p for a, r, p in zip(lead, reach, padding)):
        return F.conv2d(g, wf, None, 1, tuple(lead), dilation, c)
    span = [(o - 1) * s + 1 for o, s in zip(g.shape[-2:], stride)]
    full = [n + r for n, r in zip(size, reach)]
    if any(a + sp > f for a, sp, f in zip(lead, span, full)):
        return None
    spread = torch.empty((*g.shape[:2], *full), dtype=g.dtype, device=g.device,
                         memory_format=memory_format_of(g)).zero_()
    spread[:, :, lead[0]:lead[0] + span[0]:stride[0], lead[1]:lead[1] + span[1]:stride[1]] = g
    return F.conv2d(spread, wf, None, 1, 0, dilation, c)


def _dw_grad_weight(g: torch.Tensor, x: torch.Tensor, k: tuple[int, int],
                    stride: tuple[int, int], padding: tuple[int, int],
                    dilation: tuple[int, int]) -> torch.Tensor:
    """∂L/∂w of a depthwise convolution as one forward convolution over (sample, channel)
    planes: each plane of ``x`` correlated with its plane of ``g`` (stride and dilation change
    roles), then summed over samples."""
    n, c, h, w_ = x.shape
    ho, wo = g.shape[-2:]
    planes = x.reshape(1, n * c, h, w_)
    filters = g.reshape(n * c, 1, ho, wo)
    out = F.conv2d(planes, filters, None, dilation, padding, stride, n * c)
    return out[..., :k[0], :k[1]].reshape(n, c, k[0], k[1]).sum(0).unsqueeze(1)


class _DepthwiseConvCPU(torch.autograd.Function):
    """The convolution and its input gradient. The weight gradient flows to ``token`` and is
    computed by ``_DepthwiseWeightGrad``'s node: a separate node, so autograd skips it when no
    one asks for the weight's gradient (NASP's architecture step). A custom Function cannot
    tell that itself: its ``needs_input_grad`` only says that the weight requires grad."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, w: torch.Tensor, token: torch.Tensor | None,
                stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(w)
        ctx.conf = (tuple(x.shape), stride, padding, dilation)
        return F.conv2d(x, w, None, stride, padding, dilation, w.shape[0])

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        w, = ctx.saved_tensors
        w = w.to(g.dtype)  # under autocast the forward ran in g's (lower) precision
        shape, stride, padding, dilation = ctx.conf
        gx = None
        if ctx.needs_input_grad[0]:
            gx = _dw_grad_input(g, w, shape[-2:], stride, padding, dilation)
            if gx is None:
                gx = torch.nn.grad.conv2d_input(shape, w, g, stride, padding, dilation,
                                                w.shape[0])
        return gx, None, g if ctx.needs_input_grad[2] else None, None, None, None


class _DepthwiseWeightGrad(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, x: torch.Tensor, out_shape: tuple[int, ...],
                stride: tuple[int, int], padding: tuple[int, int],
                dilation: tuple[int, int]) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.conf = (tuple(w.shape[-2:]), stride, padding, dilation)
        return w.new_zeros(()).expand(out_shape)  # carries the output's gradient, holds nothing

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, = ctx.saved_tensors
        return (_dw_grad_weight(g, x.to(g.dtype), *ctx.conf), None, None, None, None, None)


def _conv_out(n: int, k: int, s: int, p: int, d: int) -> int:
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def depthwise_conv_cpu(x: torch.Tensor, w: torch.Tensor, stride: tuple[int, int],
                       padding: tuple[int, int], dilation: tuple[int, int]) -> torch.Tensor:
    """``F.conv2d(x, w, groups=channels)`` with the gradients of ``_dw_grad_input`` and
    ``_dw_grad_weight``."""
    token = None
    if w.requires_grad:
        out_shape = (x.shape[0], w.shape[0],
                     *(_conv_out(n, k, s, p, d) for n, k, s, p, d in
                       zip(x.shape[-2:], w.shape[-2:], stride, padding, dilation)))
        token = _DepthwiseWeightGrad.apply(w, x.detach(), out_shape, stride, padding, dilation)
    return _DepthwiseConvCPU.apply(x, w.detach(), token, stride, padding, dilation)


class DepthwiseConv2d(nn.Conv2d):
    """One ``k x k`` filter per channel, no bias.

    On the CPU, torch's backward of a dilated or 5x5 depthwise convolution is 4-40x slower than
    its forward (torch 2.13, one thread, 64x16x32x32, channels-last: dilated 3x3 input gradient
    7.7 ms and weight gradient 22 ms against a 1.4 ms forward; 5x5 weight gradient 12.5 ms
    against 2.9 ms); there both gradients are computed with forward convolutions instead
    (1.0 and 6.0 ms; 5x5: 8.7 ms). Undilated 3x3 filters keep torch's kernels, which are
    fast (0.8 ms for the weight gradient)."""

    def __init__(self, c: int, kernel: int, stride: int, padding: int, dilation: int = 1) -> None:
        super().__init__(c, c, kernel, stride=stride, padding=padding, dilation=dilation,
                         groups=c, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and (max(self.dilation) > 1 or max(self.kernel_size) > 3)
                and torch.is_grad_enabled() and fast_gradients()
                and (x.requires_grad or self.weight.requires_grad)):
            return depthwise_conv_cpu(x, self.weight, self.stride, self.padding, self.dilation)
        return super().forward(x)


class ReLUConvBN(_AfterReLU):
    """ReLU, one convolution, BN: the building block of preprocessing and plain conv ops."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(_AfterReLU):
    """ReLU, depthwise (possibly dilated) conv, pointwise conv, BN."""

    def __init__(
        self,
        c_in: int,
        c_out: int,
        kernel: int,
        stride: int,
        padding: int,
        dilation: int,
        affine: bool = True,
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            DepthwiseConv2d(c_in, kernel, stride, padding, dilation),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(_AfterReLU):
    """Two stacked DilConv blocks with dilation 1 (the first carries the stride)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self[1](self[0](x))

    def from_relu(self, r: torch.Tensor) -> torch.Tensor:
        return self[1](self[0].from_relu(r))


class FacConv(_AfterReLU):
    """ReLU, (1,k) conv with stride (1,s), (k,1) conv with stride (s,1), BN."""

    def __init__(self, c: int, kernel: int, stride: int, affine: bool = True) -> None:
        pad = kernel // 2
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c, c, (1, kernel), stride=(1, stride), padding=(0, pad), bias=False),
            nn.Conv2d(c, c, (kernel, 1), stride=(stride, 1), padding=(pad, 0), bias=False),
            nn.BatchNorm2d(c, affine=affine),
        )


class Identity(nn.Module):
    trivial = True  # nothing to compile (``nasp.compiled``)
    compiled_probe = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def probe(self, inp: Any, grad: Any) -> torch.Tensor:
        return grad.dot(inp.x)


class Zero(nn.Module):
    """The ``none`` op: zeros with the output's shape (strided at stride 2).

    ``is_zero`` lets mixed edges leave it out of weighted sums: it adds nothing to the value
    and its weight's gradient, ⟨∂L/∂s, 0⟩, is exactly zero."""

    is_zero = True
    trivial = True
    compiled_probe = None

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)

    def probe(self, inp: Any, grad: Any) -> torch.Tensor:
        return grad.g.new_zeros(())


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 stride-2 convs, the second
    on the input shifted by one pixel, concatenated. Odd sizes (e.g. 7x7 from 28x28 inputs) are
    padded so both halves agree.

    Computed as one 2x2 stride-2 convolution whose filter holds the first conv's weights at
    tap (0, 0) and the second's at tap (1, 1): the same numbers without the shift, the slices
    and the concatenation, whose gradients would come back in the default memory format."""

    compiled_probe = "from_relu"

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.from_relu(self.relu(x))

    def from_relu(self, x: torch.Tensor) -> torch.Tensor:
        """``forward`` given ``relu(x)`` (see ``_AfterReLU``)."""
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = F.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        if not fast_paths():
            shifted = F.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
            return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))
        w = torch.cat([F.pad(self.conv_1.weight, (0, 1, 0, 1)),
                       F.pad(self.conv_2.weight, (1, 0, 1, 0))])
        if uses_running_stats(self.bn):
            return conv_bn_eval(w, self.bn, x, 2)
        return self.bn(F.conv2d(x, w, None, 2))

    def probe(self, inp: Any, grad: Any) -> torch.Tensor:
        return grad.dot(self.from_relu(inp.relu()))


class _GlobalAvgPool(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.shape, ctx.fmt = x.shape, memory_format_of(x)
        return x.mean((2, 3))

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> torch.Tensor:
        n, c, h, w = ctx.shape
        return (g / (h * w)).view(n, c, 1, 1).expand(n, c, h, w).contiguous(
            memory_format=ctx.fmt)


class GlobalAvgPool(nn.Module):
    """(N, C, H, W) -> (N, C) mean over the map; its gradient keeps the input's memory format
    (torch's comes back contiguous, and every op of the last cell's backward would follow)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _GlobalAvgPool.apply(x)


# --- pooling ----------------------------------------------------------------------------------

def _pool_geometry(pool: nn.Module) -> tuple[int, int, int]:
    k, s, p = pool.kernel_size, pool.stride, pool.padding  # type: ignore[attr-defined]
    return (k if isinstance(k, int) else k[0], s if isinstance(s, int) else s[0],
            p if isinstance(p, int) else p[0])


def separable_max_pool(x: torch.Tensor, k: int, stride: int, padding: int) -> torch.Tensor:
    """Max pooling as a max over the window's columns, then its rows: 2(k-1) element-wise
    maxima, exactly max_pool2d's values (a max does not round). On the CPU 2-15x faster than
    torch's kernel (64x16x32x32, 3x3: 4.0 -> 2.1 ms channels-last, 31 -> 2.1 ms contiguous);
    it has no index to route gradients by, so autograd passes use torch's kernel."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (padding,) * 4, value=float("-inf")) if padding else x
    ho, wo = (h + 2 * padding - k) // stride + 1, (w + 2 * padding - k) // stride + 1

    def reduce(t: torch.Tensor, dim: int, n: int) -> torch.Tensor:
        def tap(j: int) -> torch.Tensor:
            return t.narrow(dim, j, (n - 1) * stride + 1)[
                (slice(None),) * dim + (slice(None, None, stride),)]

        out = torch.maximum(tap(0), tap(1))
        for j in range(2, k):
            torch.maximum(out, tap(j), out=out)
        return out

    return reduce(reduce(xp, 3, wo), 2, ho)


class MaxPool(nn.MaxPool2d):
    """``nn.MaxPool2d`` (square window, padding k // 2); on the CPU, passes without an autograd
    graph (NASP's probes, evaluation) use :func:`separable_max_pool`."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if (x.device.type == "cpu" and self.dilation in (1, (1, 1)) and not self.ceil_mode
                and fast_paths() and not (torch.is_grad_enabled() and x.requires_grad)):
            return separable_max_pool(x, *_pool_geometry(self))
        return super().forward(x)


class AvgPool(nn.AvgPool2d):
    """``nn.AvgPool2d`` without counting padding; on the CPU a depthwise box-filter convolution
    times the reciprocal of each output's window count, 3-5x faster than torch's kernel forward
    and backward (64x16x32x32, 3x3, channels-last: 3.1 -> 1.0 ms forward, 24 -> 5.4 ms forward
    plus backward)."""

    def __init__(self, k: int, stride: int) -> None:
        super().__init__(k, stride=stride, padding=k // 2, count_include_pad=False)
        self._box: dict[tuple, torch.Tensor] = {}

    def _filters(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Box filter and reciprocal counts for ``x``'s shape, made once per shape."""
        key = (x.shape[1:], x.dtype, x.device)
        made = self._box.get(key)
        if made is None:
            k, s, p = _pool_geometry(self)
            c, h, w = x.shape[1:]
            ones = torch.ones(1, 1, h, w, dtype=x.dtype, device=x.device)
            counts = F.avg_pool2d(ones, k, s, p, count_include_pad=False, divisor_override=1)
            box = torch.ones(c, 1, k, k, dtype=x.dtype, device=x.device)
            made = self._box[key] = (box, counts.reciprocal())
        return made

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.device.type != "cpu" or x.dim() != 4 or not fast_paths():
            return super().forward(x)
        box, inv_counts = self._filters(x)
        k, s, p = _pool_geometry(self)
        return F.conv2d(x, box, None, s, p, 1, x.shape[1]).mul_(inv_counts)


def _update_running_stats(bn: nn.modules.batchnorm._BatchNorm, mean: torch.Tensor,
                          var_unbiased: torch.Tensor) -> None:
    """The running-statistics update a training-mode BN forward makes, given its batch stats."""
    if not (bn.training and bn.track_running_stats) or bn.running_mean is None:
        return
    bn.num_batches_tracked.add_(1)  # type: ignore[union-attr,operator]
    factor = (1.0 / float(bn.num_batches_tracked) if bn.momentum is None  # type: ignore[arg-type]
              else bn.momentum)
    bn.running_mean.mul_(1 - factor).add_(mean, alpha=factor)
    bn.running_var.mul_(1 - factor).add_(var_unbiased, alpha=factor)  # type: ignore[union-attr]


class PoolBN(nn.Sequential):
    """A pooling op followed by BN; search cells normalise pool outputs so their scale matches
    the convolutions (DARTS does this in the search network only).

    Probing: the pool has no parameters and a non-affine BN in training mode normalises with
    the batch's statistics, so every edge that pools the same tensor the same way gets the same
    output. It is computed once per input (``inp.memo``); each edge adds its own running-
    statistics update, as its BN would."""

    # compiled probes would pool every edge's input anew; the shared eager map is cheaper
    compiled_probe = None

    def __init__(self, pool: nn.Module, c: int) -> None:
        super().__init__(pool, nn.BatchNorm2d(c, affine=False))

    def probe(self, inp: Any, grad: Any) -> torch.Tensor:
        pool, bn = self[0], self[1]
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm) or bn.affine or not bn.training:
            return grad.dot(self.forward(inp.x))
        key = ("pool-bn", type(pool).__name__, _pool_geometry(pool), bn.eps)
        out, mean, var_unbiased = inp.memo(key, lambda x: _normalise(pool(x), bn.eps))
        _update_running_stats(bn, mean, var_unbiased)
        return grad.dot(out)


def _normalise(z: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batch-normalised ``z`` (no affine), its channel means and unbiased variances: torch's
    own BN kernel, whose running statistics with momentum 1 are exactly the batch's."""
    mean = torch.zeros(z.shape[1], dtype=z.dtype, device=z.device)
    var = torch.ones_like(mean)
    out = F.batch_norm(z, mean, var, None, None, True, 1.0, eps)
    return out, mean, var


def _pool(kind: str, k: int) -> OpFactory:
    def make(c: int, stride: int, affine: bool) -> nn.Module:
        pool: nn.Module = AvgPool(k, stride) if kind == "avg" else MaxPool(k, stride, k // 2)
        # evaluation networks (affine=True) use the bare pool, as DARTS's released networks do
        return pool if affine else PoolBN(pool, c)

    return make


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    return Identity() if stride == 1 else FactorizedReduce(c, c, affine)


OPS.register("none", lambda c, stride, affine: Zero(stride))
OPS.register("skip_connect", _skip)
OPS.register("avg_pool_3x3", _pool("avg", 3))
OPS.register("max_pool_3x3", _pool("max", 3))
OPS.register("max_pool_5x5", _pool("max", 5))
OPS.register("max_pool_7x7", _pool("max", 7))
OPS.register("sep_conv_3x3", lambda c, s, a: SepConv(c, c, 3, s, 1, a))
OPS.register("sep_conv_5x5", lambda c, s, a: SepConv(c, c, 5, s, 2, a))
OPS.register("sep_conv_7x7", lambda c, s, a: SepConv(c, c, 7, s, 3, a))
OPS.register("dil_conv_3x3", lambda c, s, a: DilConv(c, c, 3, s, 2, 2, a))
OPS.register("dil_conv_5x5", lambda c, s, a: DilConv(c, c, 5, s, 4, 2, a))
OPS.register("conv_1x3_3x1", lambda c, s, a: FacConv(c, 3, s, a))
OPS.register("conv_1x7_7x1", lambda c, s, a: FacConv(c, 7, s, a))
OPS.register("conv_1x1", lambda c, s, a: ReLUConvBN(c, c, 1, s, 0, a))
OPS.register("conv_3x3", lambda c, s, a: ReLUConvBN(c, c, 3, s, 1, a))


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Cells at 1/3 and 2/3 depth halve the resolution and double the channels (DARTS's
    network layout, shared by the search and the evaluation networks)."""
    return (layers // 3, 2 * layers // 3)


def make_op(name: str, c: int, stride: int, affine: bool) -> nn.Module:
    """Build a registered operation (raises ``NaspError`` naming the valid ops if unknown)."""
    return OPS.get(name)(c, stride, affine)


def op_param_count(name: str, c: int = 12, stride: int = 1,
                   registry: Registry[OpFactory] = OPS) -> int:
    """Parameters of an op, BN excluded: the size measure of the regularizer.

    The NASP release uses these counts at C=12 and stride 1 (sep_conv_3x3 504, conv_3x3 1296,
    ...); BN is left out so the cost reflects the convolution itself. At stride 2 a skip
    connection is a factorized reduce with two 1x1 convolutions (144 at C=12)."""
    module = registry.get(name)(c, stride, False)
    return sum(
        p.numel()
        for m in module.modules()
        if not isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    )
