"""Probes of a user's candidates run their fresh-input layers in place.

A probe runs a candidate once without an autograd graph and keeps one number of it
(``nasp.supernet.probe``), so every intermediate tensor of that run is dead as soon as the next
layer has read it. Inside an ``nn.Sequential`` (how most blocks hold conv → BN → activation) a
batch norm or an activation whose input the previous layer has just made can overwrite that
input instead of allocating a tensor of its own: the same kernels, the same values bit for bit,
one allocation and one pass over memory fewer. At MobileNet sizes on the CPU that is a large
part of such a layer's cost (one thread, 64x192x32x32: conv + BN 59 ms, conv + BN in place
30 ms; the probes of one iteration of ``benchmarks/step_time.py --space
examples/mobilenet_search.py:mobilenet_wide`` went from 1.23 to 0.95 s).

When a layer runs in place, all of these hold, checked at every call (else it runs as written):

* no autograd graph is being recorded (probes run under ``no_grad``);
* the container is exactly ``nn.Sequential``, the layer is not its first, and the layer before
  it is one of torch's own producers (``PRODUCERS``: convolutions, linear layers, norms; exact
  types, so no subclass can have kept a reference to its output) or itself ran in place: the
  input is a tensor nobody else holds;
* neither layer has hooks, and no global module hooks are registered (a hook could keep or
  replace the tensor);
* activations: exactly one of torch's activations with an ``inplace`` switch (``ACTIVATIONS``),
  run with it switched on for the one call;
* batch norms: exactly ``BatchNorm1d/2d/3d`` on a CPU tensor of float32/float64 matching its
  weights, outside autocast, with more than one value per channel in training mode. The module's
  own ``forward`` logic (running statistics, batch count, momentum, evaluation mode) is followed,
  and ``native_batch_norm`` writes into its input: on the CPU that is the kernel ``batch_norm``
  runs (bit for bit, tested across modes, dtypes and layouts). Not on CUDA, where
  ``batch_norm`` may use cuDNN's kernel and the caching allocator makes allocation free anyway.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn
from torch.nn.modules import module as _module

PRODUCERS: tuple[type[nn.Module], ...] = (
    nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d,
    nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm,
    nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)
ACTIVATIONS: tuple[type[nn.Module], ...] = (
    nn.ReLU, nn.ReLU6, nn.Hardtanh, nn.LeakyReLU, nn.ELU, nn.CELU, nn.SELU, nn.SiLU, nn.Mish,
    nn.Hardswish, nn.Hardsigmoid, nn.Threshold)
_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
_PRODUCER_SET = frozenset(PRODUCERS)
_ACTIVATION_SET = frozenset(ACTIVATIONS)
_BN_SET = frozenset(_BATCH_NORMS)
# per candidate module, kept beside it (not in it: a fixed or exported network carries nothing
# of nasp's)
_PLANS: weakref.WeakKeyDictionary[nn.Module, tuple[nn.Sequential, ...]] = \
    weakref.WeakKeyDictionary()


def _hooked(m: nn.Module) -> bool:
    return bool(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks
                or getattr(m, "_backward_pre_hooks", None))


def _global_hooks() -> bool:
    return bool(_module._global_forward_hooks or _module._global_forward_pre_hooks
                or _module._global_backward_hooks
                or getattr(_module, "_global_backward_pre_hooks", None))


def _autocast_cpu() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch releases before the device-generic API
        return torch.is_autocast_cpu_enabled()


def _bn_in_place(bn: nn.modules.batchnorm._BatchNorm, x: torch.Tensor) -> torch.Tensor | None:
    """``bn(x)`` written into ``x``; None where the conditions of the module doc do not hold."""
    if x.device.type != "cpu" or x.dtype not in (torch.float32, torch.float64) or \
            (bn.weight is not None and bn.weight.dtype != x.dtype) or \
            (bn.running_mean is not None and bn.running_mean.dtype != x.dtype) or \
            _autocast_cpu():
        return None
    bn._check_input_dim(x)
    if bn.training:
        per_channel = x.numel() // max(x.shape[1], 1) if x.dim() > 1 else 0
        if per_channel <= 1:
            return None  # the module's own call raises its error for this
    factor = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        factor = 1.0 / float(bn.num_batches_tracked) if bn.momentum is None else bn.momentum
    batch_stats = bn.training or (bn.running_mean is None and bn.running_var is None)
    keep = not bn.training or bn.track_running_stats
    return torch.native_batch_norm(
        x, bn.weight, bn.bias, bn.running_mean if keep else None,
        bn.running_var if keep else None, batch_stats, factor, bn.eps,
        out=(x, x.new_empty(0), x.new_empty(0)))[0]


def _run_sequential(seq: nn.Sequential, x: Any) -> Any:
    """``nn.Sequential.forward`` with the layers of the module doc run in place."""
    if torch.is_grad_enabled() or _global_hooks():
        return nn.Sequential.forward(seq, x)
    fresh = False
    for m in seq:
        kind = type(m)
        if fresh and isinstance(x, torch.Tensor) and not _hooked(m):
            if kind in _ACTIVATION_SET and not m.inplace:
                m.__dict__["inplace"] = True
                try:
                    x = m.forward(x)
                finally:
                    m.__dict__["inplace"] = False
                continue
            if kind in _BN_SET:
                y = _bn_in_place(m, x)
                if y is not None:
                    x = y
                    continue
        x = m(x)
        fresh = kind in _PRODUCER_SET and not _hooked(m)
    return x


def _plan(module: nn.Module) -> tuple[nn.Sequential, ...]:
    """The ``nn.Sequential`` containers inside ``module`` (itself included) where some layer may
    run in place; worked out once per module (a search does not rebuild its candidates)."""
    plan = _PLANS.get(module)
    if plan is None:
        found = []
        for m in module.modules():
            if type(m) is nn.Sequential:
                kinds = [type(c) for c in m]
                if any(k in _ACTIVATION_SET or k in _BN_SET for k in kinds[1:]) and \
                        any(k in _PRODUCER_SET for k in kinds[:-1]):
                    found.append(m)
        plan = _PLANS[module] = tuple(found)
    return plan


@contextmanager
def fresh_in_place(module: nn.Module) -> Iterator[None]:
    """Inside the block, calls of ``module`` made without a graph run the layers of the module
    doc in place (calls with a graph run as written). Not re-entrant for one module."""
    plan = _plan(module)
    if not plan or torch.is_grad_enabled():
        yield
        return
    patched = []
    try:
        for seq in plan:
            if "forward" not in seq.__dict__:
                seq.__dict__["forward"] = _bound(seq)
                patched.append(seq)
        yield
    finally:
        for seq in patched:
            seq.__dict__.pop("forward", None)


def _bound(seq: nn.Sequential) -> Any:
    def forward(x: Any) -> Any:
        return _run_sequential(seq, x)

    return forward
