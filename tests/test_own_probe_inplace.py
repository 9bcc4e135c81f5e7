"""Probes of a user's candidates overwrite their dead intermediates (``nasp.supernet.inplace``):
the same values bit for bit, in place only where nobody else can hold the tensor."""

from __future__ import annotations

import copy
import itertools
from contextlib import nullcontext

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

import nasp.supernet.probe as probe_module
from helpers import make_strategy
from nasp.strategies import ArchContext
from nasp.supernet.choices import Choice, attach
from nasp.supernet.inplace import _bn_in_place, fresh_in_place


class OpLog(TorchDispatchMode):
    """The aten ops that run inside the block, by name (``hardtanh_``, ``native_batch_norm``...),
    with whether they wrote into an argument (an ``out=`` call or a trailing-underscore op)."""

    def __init__(self) -> None:
        super().__init__()
        self.ops: list[tuple[str, bool]] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name.split("::")[-1]
        self.ops.append((name, name.endswith("_") or "out" in kwargs))
        return func(*args, **kwargs)

    def names(self) -> list[str]:
        return [n + ("[out]" if w and not n.endswith("_") else "") for n, w in self.ops]


def block(cin: int, cout: int, act: nn.Module) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),
                         act, nn.Conv2d(cout, cout, 1), nn.BatchNorm2d(cout, affine=False))


ACTS = [nn.ReLU(), nn.ReLU6(), nn.Hardtanh(-0.5, 0.7), nn.LeakyReLU(0.1), nn.ELU(), nn.CELU(),
        nn.SELU(), nn.SiLU(), nn.Mish(), nn.Hardswish(), nn.Hardsigmoid(), nn.Threshold(0.1, -1)]


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.a = Choice({type(a).__name__: block(4, 4, a) for a in ACTS[:6]})
        self.b = Choice({type(a).__name__: block(4, 4, a) for a in ACTS[6:]})
        self.head = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(self.a(self.stem(x))).mean((2, 3)))


def _arch_gradient(model: nn.Module, dtype: torch.dtype, fmt: torch.memory_format):
    space = attach(model)
    s = make_strategy("nasp", space, seed=0, init_noise=0.4)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(5, 2, 6, 6, generator=g, dtype=dtype).contiguous(memory_format=fmt)
    y = torch.randint(0, 3, (5,), generator=g)

    def loss(b, weighting):
        with space.state.bound(weighting):
            return F.cross_entropy(model(b[0]), b[1])

    params = list(model.parameters())
    ctx = ArchContext(loss, params, torch.optim.SGD(params, lr=0.1))
    return s.arch_gradient(ctx, (x, y))


@pytest.mark.parametrize("dtype,fmt", [(torch.float32, torch.channels_last),
                                       (torch.float64, torch.contiguous_format)])
def test_in_place_probes_give_the_architecture_gradient_bit_for_bit(monkeypatch, dtype, fmt):
    torch.manual_seed(0)
    net = Net().to(dtype).to(memory_format=fmt)
    twin = copy.deepcopy(net)
    fast = _arch_gradient(net, dtype, fmt)
    monkeypatch.setattr(probe_module, "fresh_in_place", _as_written)
    plain = _arch_gradient(twin, dtype, fmt)
    for a, b in zip(fast, plain, strict=True):
        assert torch.equal(a, b)
        assert float(a.abs().sum()) > 0
    for p, q in zip(net.state_dict().values(), twin.state_dict().values(), strict=True):
        assert torch.equal(p, q)  # frozen running statistics stay where they were in both


def _as_written(module):
    return nullcontext()


def test_a_probe_runs_its_batch_norms_and_activations_in_place():
    torch.manual_seed(0)
    net = Net()
    log = OpLog()
    real = probe_module.probe_op

    def logged(op, inp, grad):
        with log:
            return real(op, inp, grad)

    probe_module.probe_op = logged
    try:
        _arch_gradient(net, torch.float32, torch.contiguous_format)
    finally:
        probe_module.probe_op = real
    names = log.names()
    # every probed candidate: conv, BN written into the conv's output, the activation in place
    assert names.count("native_batch_norm[out]") >= 2 * 10
    acts = ("hardtanh", "relu", "leaky_relu", "elu", "celu", "selu", "silu", "mish", "hardswish",
            "hardsigmoid", "threshold")
    # ten of the twelve candidates are probed (one per choice is selected and runs with a graph)
    assert len({n for n in names if n.rstrip("_") in acts and n.endswith("_")}) >= 8, names
    assert not any(n in acts for n in names), names  # no activation out of place
    assert "native_batch_norm" not in names, names


def _no_write_to(x: torch.Tensor, module: nn.Module) -> None:
    before = x.clone()
    with torch.no_grad(), fresh_in_place(module):
        module(x)
    assert torch.equal(x, before)


def test_a_layer_never_writes_into_a_tensor_it_did_not_see_made():
    x = torch.randn(3, 4, 5, 5)
    # the container's own input (first layer), and an input passed on by Identity or Flatten
    _no_write_to(x, nn.Sequential(nn.ReLU(), nn.Conv2d(4, 4, 1)))
    _no_write_to(x, nn.Sequential(nn.BatchNorm2d(4), nn.ReLU()))  # BN makes its own output
    _no_write_to(x, nn.Sequential(nn.Identity(), nn.BatchNorm2d(4), nn.ReLU()))
    _no_write_to(x, nn.Sequential(nn.Identity(), nn.ReLU6()))
    _no_write_to(x, nn.Sequential(nn.Flatten(), nn.ReLU()))

    class Keeps(nn.Conv2d):  # a subclass may keep its output: not one of torch's producers
        def forward(self, x):
            self.kept = super().forward(x)
            return self.kept

    keeps = Keeps(4, 4, 1)
    with torch.no_grad(), fresh_in_place(seq := nn.Sequential(keeps, nn.ReLU())):
        out = seq(x)
    assert out.data_ptr() != keeps.kept.data_ptr() and float(keeps.kept.min()) < 0


def test_hooks_keep_a_layer_as_written():
    x = torch.randn(3, 4, 5, 5)
    seen = []
    conv = nn.Conv2d(4, 4, 1)
    conv.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad(), fresh_in_place(seq := nn.Sequential(conv, nn.BatchNorm2d(4),
                                                              nn.ReLU())):
        out = seq(x)
    assert float(seen[0].min()) < 0 and out.data_ptr() != seen[0].data_ptr()
    log = OpLog()
    handle = nn.modules.module.register_module_forward_hook(lambda m, i, o: None)
    try:
        with torch.no_grad(), fresh_in_place(seq), log:
            seq(x)
    finally:
        handle.remove()
    # a global hook: nothing in place (the add_ is BN's batch count)
    assert {"native_batch_norm", "relu"} <= set(log.names()), log.ops
    assert not {"native_batch_norm[out]", "relu_"} & set(log.names()), log.ops


def test_with_a_graph_the_layers_run_as_written_and_the_patch_is_gone_afterwards():
    seq = nn.Sequential(nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4), nn.ReLU())
    x = torch.randn(3, 4, 5, 5)
    for entered_without_graph in (False, True):
        log = OpLog()
        with torch.set_grad_enabled(not entered_without_graph), fresh_in_place(seq), \
                torch.enable_grad(), log:
            seq(x).sum().backward()
        assert "relu_" not in log.names() and "native_batch_norm[out]" not in log.names()
    assert "forward" not in seq.__dict__
    with pytest.raises(RuntimeError, match="boom"), torch.no_grad(), fresh_in_place(seq):
        raise RuntimeError("boom")
    assert "forward" not in seq.__dict__ and seq[2].inplace is False


def test_batch_norm_in_place_follows_the_module_in_every_mode():
    shapes = {nn.BatchNorm1d: (6, 3, 4), nn.BatchNorm2d: (6, 3, 4, 4),
              nn.BatchNorm3d: (4, 3, 2, 3, 3)}
    for cls, affine, track, training, momentum, dtype in itertools.product(
            shapes, (True, False), (True, False), (True, False), (0.1, None),
            (torch.float32, torch.float64)):
        shape = shapes[cls]
        a = cls(3, affine=affine, track_running_stats=track, momentum=momentum).to(dtype)
        if track:
            a.running_mean.uniform_(-1, 1)
            a.running_var.uniform_(0.5, 2)
        a.train(training)
        b = copy.deepcopy(a)
        x = torch.randn(shape, dtype=dtype) * 2 + 0.5
        with torch.no_grad():
            want = a(x.clone())
            z = x.clone()
            got = _bn_in_place(b, z)
        assert got is not None and got.data_ptr() == z.data_ptr()
        assert torch.equal(want, got), (cls, affine, track, training, momentum, dtype)
        for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True):
            assert torch.equal(p, q)
    # not where the module's kernel may differ (CUDA's cuDNN) or where it would raise
    assert _bn_in_place(nn.BatchNorm2d(3), torch.empty(2, 3, 4, 4, device="meta")) is None
    assert _bn_in_place(nn.BatchNorm1d(3).train(), torch.randn(1, 3)) is None
    assert _bn_in_place(nn.BatchNorm2d(3), torch.randn(2, 3, 4, 4, dtype=torch.float16)) is None
