"""Memory format: resolved per device, kept through every op, and numerically neutral."""

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

import nasp.ops
from helpers import context, make_strategy, tiny_batch, tiny_net
from nasp.device import memory_format_name, resolve_memory_format
from nasp.errors import NaspError
from nasp.genotype import GENOTYPES
from nasp.models import build_eval_model
from nasp.supernet.weighting import CellWeighting, dense_plan

CL, NCHW = torch.channels_last, torch.contiguous_format
N = 6  # a batch size no channel count equals, so 4-D activations are told apart from weights


def test_resolve_memory_format():
    assert resolve_memory_format("cpu") == CL
    assert resolve_memory_format(torch.device("cpu"), "auto") == CL
    assert resolve_memory_format("cuda", "auto") == CL
    assert resolve_memory_format("meta", "auto") == NCHW  # unmeasured devices keep torch's
    assert resolve_memory_format("cpu", "contiguous") == NCHW
    assert resolve_memory_format("cpu", "channels_last") == CL
    for value in ("auto", "contiguous", "channels_last"):
        fmt = resolve_memory_format("cpu", value)
        assert resolve_memory_format("cpu", memory_format_name(fmt)) == fmt
    with pytest.raises(NaspError, match="nhwc") as info:
        resolve_memory_format("cpu", "nhwc")
    assert "channels_last" in info.value.hint


class LayoutCheck(TorchDispatchMode):
    """Records every operator whose 4-D batch-sized output is dense in the *other* layout:
    a silent conversion. Views (slices of a channels-last tensor are dense in neither) pass.
    The weight gradient of dilated depthwise convolutions converts on purpose (it works on
    per-(sample, channel) planes); ``paused`` is set while it runs."""

    def __init__(self, fmt: torch.memory_format) -> None:
        super().__init__()
        self.fmt = fmt
        self.bad: list[str] = []
        self.seen = 0
        self.paused = False

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if self.paused:
            return out
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if (isinstance(t, torch.Tensor) and t.dim() == 4 and t.shape[0] == N
                    and t.untyped_storage().data_ptr() not in inputs):  # views are not copies
                self.seen += 1
                other = NCHW if self.fmt == CL else CL
                if t.is_contiguous(memory_format=other) and not t.is_contiguous(
                        memory_format=self.fmt):
                    self.bad.append(f"{func} -> {tuple(t.shape)} {t.stride()}")
        return out


def run_checked(fmt, fn):
    real = nasp.ops._dw_grad_weight

    def planes(*args):
        check.paused = True
        try:
            return real(*args)
        finally:
            check.paused = False

    with LayoutCheck(fmt) as check:
        nasp.ops._dw_grad_weight = planes
        try:
            fn()
        finally:
            nasp.ops._dw_grad_weight = real
    assert check.seen > 50
    assert not check.bad, "\n".join(check.bad[:10])


def search_setup(space, fmt, layers=3):
    net = tiny_net(space, layers=layers).to(memory_format=fmt)
    x, y = tiny_batch(n=N, size=10)
    return net, (x.contiguous(memory_format=fmt), y)


@pytest.mark.parametrize("fmt", [CL, NCHW])
@pytest.mark.parametrize("space", ["nasp-7", "nasp-12", "darts"])
def test_search_network_keeps_the_format_in_every_op(fmt, space):
    """Weight step (forward and backward), NASP's architecture step (forward, backward and
    every probe), DARTS's dense pass: no operator converts activations to the other layout."""
    net, batch = search_setup(space, fmt)
    strategy = make_strategy("nasp", space, seed=1, init_noise=0.2)
    ctx = context(net)
    run_checked(fmt, lambda: ctx.loss(batch, strategy.weighting()).backward())
    run_checked(fmt, lambda: strategy.arch_gradient(ctx, batch))
    darts = make_strategy("darts", space)
    run_checked(fmt, lambda: darts.arch_step(ctx, batch, batch))


@pytest.mark.parametrize("fmt", [CL, NCHW])
@pytest.mark.parametrize("name", ["DARTS_V2", "NASP_12"])
def test_evaluation_network_keeps_the_format_in_every_op(fmt, name):
    torch.manual_seed(0)
    net = build_eval_model(GENOTYPES["cnn"][name], 3, 10, 16, channels=4, layers=3,
                           auxiliary=True, drop_path_prob=0.2).double().to(memory_format=fmt)
    x = torch.randn(N, 3, 16, 16, dtype=torch.float64).contiguous(memory_format=fmt)

    def train_step():
        logits, aux = net(x)
        (logits.sum() + aux.sum()).backward()

    net.train()
    run_checked(fmt, train_step)
    net.eval()
    with torch.no_grad():
        run_checked(fmt, lambda: net(x))


@pytest.mark.parametrize("space", ["nasp-7", "nasp-12", "darts"])
def test_channels_last_gives_the_same_numbers(space):
    """Logits, weight gradients and NASP's architecture gradient agree across formats, and the
    lean gradient still equals the full supernet's in channels-last."""
    results = []
    for fmt in (NCHW, CL):
        net, batch = search_setup(space, fmt)
        strategy = make_strategy("nasp", space, seed=1, init_noise=0.2)
        ctx = context(net)
        loss = ctx.loss(batch, strategy.weighting())
        grads = torch.autograd.grad(loss, [p for p in net.parameters()], allow_unused=True)
        lean = strategy.arch_gradient(ctx, batch)
        bar = {k: v.clone().requires_grad_(True) for k, v in strategy.A_bar.items()}
        full_w = {k: CellWeighting(b, dense_plan(*b.shape)) for k, b in bar.items()}
        full = torch.autograd.grad(ctx.loss(batch, full_w), list(bar.values()))
        for g_lean, g_full in zip(lean, full):
            torch.testing.assert_close(g_lean, g_full, rtol=1e-9, atol=1e-12)
        results.append((loss.detach(), grads, lean))
    (l0, g0, a0), (l1, g1, a1) = results
    torch.testing.assert_close(l0, l1, rtol=1e-12, atol=1e-12)
    for a, b in zip(g0, g1):
        assert (a is None) == (b is None)
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)
    for x, y in zip(a0, a1, strict=True):
        torch.testing.assert_close(x, y, rtol=1e-9, atol=1e-12)


def test_evaluation_network_same_numbers_across_formats():
    outs = []
    for fmt in (NCHW, CL):
        torch.manual_seed(0)
        net = build_eval_model(GENOTYPES["cnn"]["DARTS_V2"], 3, 10, 16, channels=4, layers=3,
                               auxiliary=False).double().to(memory_format=fmt)
        x = torch.randn(N, 3, 16, 16, dtype=torch.float64, generator=torch.Generator()
                        .manual_seed(1)).contiguous(memory_format=fmt)
        y = torch.arange(N) % 10
        loss = F.cross_entropy(net(x), y)
        outs.append((loss.detach(), torch.autograd.grad(loss, list(net.parameters()))))
    torch.testing.assert_close(outs[0][0], outs[1][0], rtol=1e-12, atol=1e-12)
    for a, b in zip(outs[0][1], outs[1][1]):
        torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_bf16_weight_step_and_float32_architecture_gradient():
    """The CUDA recipe (bf16 autocast around the weight step's forward, channels-last, the
    architecture gradient outside autocast) runs on the CPU too, through every custom path."""
    from nasp.device import autocast, resolve_amp

    assert resolve_amp("cuda") and not resolve_amp("cpu") and resolve_amp("cpu", True)
    torch.manual_seed(0)
    net = tiny_net("nasp-7", dtype=torch.float32).to(memory_format=CL)
    x, y = tiny_batch(n=N, size=10, dtype=torch.float32)
    batch = (x.contiguous(memory_format=CL), y)
    strategy = make_strategy("nasp", "nasp-7", dtype=torch.float32, seed=1, init_noise=0.2)
    ctx = context(net)
    grads = strategy.arch_gradient(ctx, batch)
    assert all(g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)
    for plan in (strategy.weighting(), strategy.arch_weighting(strategy.A_bar)):
        net.zero_grad(set_to_none=True)
        with autocast("cpu", True):
            logits = net(batch[0], plan)
            loss = F.cross_entropy(logits, y)
        assert logits.dtype == torch.bfloat16
        loss.backward()
        used = [p for p in net.parameters() if p.grad is not None]
        assert used and all(p.grad.dtype == torch.float32 and torch.isfinite(p.grad).all()
                            for p in used)
    with autocast("cpu", False):
        assert net(batch[0], strategy.weighting()).dtype == torch.float32


def test_channels_last_steps_are_bit_reproducible():
    """What a resumed run relies on: the same weights, batch and Ā give bit-identical
    architecture gradients, weight gradients and BN statistics in channels-last."""
    runs = []
    for _ in range(2):
        net, batch = search_setup("nasp-7", CL)
        net.float()
        batch = (batch[0].float(), batch[1])
        strategy = make_strategy("nasp", "nasp-7", dtype=torch.float32, seed=3, init_noise=0.2)
        ctx = context(net)
        arch = strategy.arch_gradient(ctx, batch)
        loss = ctx.loss(batch, strategy.weighting())
        loss.backward()
        runs.append((arch, [p.grad for p in net.parameters()], list(net.buffers())))
    (a0, g0, b0), (a1, g1, b1) = runs
    assert all(torch.equal(x, y) for x, y in zip(a0, a1, strict=True))
    assert all((x is None and y is None) or torch.equal(x, y) for x, y in zip(g0, g1))
    assert all(torch.equal(x, y) for x, y in zip(b0, b1))
