"""The CPU fast paths of ops.py and the shared probes compute what torch's kernels compute."""

import pytest
import torch
import torch.nn.functional as F

from helpers import context, make_strategy, tiny_batch, tiny_net
from nasp.ops import AvgPool, DepthwiseConv2d, MaxPool, make_op, separable_max_pool
from nasp.spaces import get_space
from nasp.supernet.mixed import MixedOp
from nasp.supernet.probe import dot
from nasp.supernet.weighting import RUN, SKIP, CellWeighting, dense_plan

FORMATS = [torch.contiguous_format, torch.channels_last]


def batch(shape=(3, 4, 9, 11), fmt=torch.contiguous_format, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("k, stride", [(3, 1), (3, 2), (5, 1), (7, 2)])
def test_separable_max_pool_equals_max_pool_exactly(fmt, k, stride):
    x = batch(fmt=fmt)
    want = F.max_pool2d(x, k, stride, k // 2)
    got = separable_max_pool(x, k, stride, k // 2)
    assert torch.equal(got, want)
    with torch.no_grad():
        assert torch.equal(MaxPool(k, stride, k // 2)(x), want)


def test_max_pool_with_autograd_routes_gradients_like_torch():
    """Ties (a constant region) must send the gradient where torch's kernel sends it."""
    x = batch()
    x[:, :, :4, :4] = 0.5
    x.requires_grad_(True)
    g1, = torch.autograd.grad(MaxPool(3, 1, 1)(x).square().sum(), x)
    g2, = torch.autograd.grad(F.max_pool2d(x, 3, 1, 1).square().sum(), x)
    assert torch.equal(g1, g2)


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("k, stride", [(3, 1), (3, 2), (5, 2)])
def test_box_filter_average_pool_equals_avg_pool(fmt, k, stride):
    x = batch(fmt=fmt).requires_grad_(True)
    pool = AvgPool(k, stride)
    got = pool(x)
    want = F.avg_pool2d(x, k, stride, k // 2, count_include_pad=False)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    w = torch.randn_like(want)
    g1, = torch.autograd.grad((got * w).sum(), x)
    g2, = torch.autograd.grad((want * w).sum(), x)
    torch.testing.assert_close(g1, g2, rtol=1e-12, atol=1e-12)
    assert pool.state_dict() == {}  # checkpoints do not see the cached filters


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("k, stride, dilation", [(3, 1, 2), (5, 1, 2), (3, 2, 2), (5, 2, 2),
                                                 (5, 1, 1), (5, 2, 1), (7, 2, 1), (3, 1, 1)])
def test_depthwise_gradients_equal_torch_kernels(fmt, k, stride, dilation):
    torch.manual_seed(0)
    pad = dilation * (k // 2)
    conv = DepthwiseConv2d(4, k, stride, pad, dilation).double().to(memory_format=fmt)
    for size in ((3, 4, 10, 10), (3, 4, 9, 11)):
        x = batch(size, fmt).requires_grad_(True)
        y = conv(x)
        want_y = F.conv2d(x, conv.weight, None, stride, pad, dilation, 4)
        torch.testing.assert_close(y, want_y, rtol=0, atol=0)
        w = torch.randn_like(y)
        got = torch.autograd.grad((y * w).sum(), [x, conv.weight])
        want = torch.autograd.grad((want_y * w).sum(), [x, conv.weight])
        for a, b in zip(got, want):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


def test_depthwise_custom_backward_passes_gradcheck():
    conv = DepthwiseConv2d(2, 3, 2, 2, 2).double()
    x = batch((2, 2, 7, 6)).requires_grad_(True)
    assert torch.autograd.gradcheck(conv, (x,))
    assert torch.autograd.gradgradcheck(conv, (x,))


@pytest.mark.parametrize("fmt", FORMATS)
def test_dot_matches_sum_of_products_in_any_layout(fmt):
    a = batch(fmt=fmt)
    for b in (batch(fmt=fmt, seed=1), batch(seed=1), batch((3, 4, 11, 9), seed=1).transpose(2, 3)):
        torch.testing.assert_close(dot(a, b), (a * b).sum(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("space", ["nasp-7", "nasp-12", "darts"])
def test_probes_update_running_statistics_like_a_forward(space):
    """Probes share pooled maps between edges; each edge's BN must still see its update."""
    lean_net, full_net = tiny_net(space), tiny_net(space)
    strategy = make_strategy("nasp", space, seed=1, init_noise=0.2)
    batch_ = tiny_batch()
    strategy.arch_gradient(context(lean_net), batch_)
    bar = {k: v.clone().requires_grad_(True) for k, v in strategy.A_bar.items()}
    full_w = {k: CellWeighting(b, dense_plan(*b.shape)) for k, b in bar.items()}
    context(full_net).loss(batch_, full_w).backward()
    lean, full = dict(lean_net.named_buffers()), dict(full_net.named_buffers())
    for name, value in full.items():
        torch.testing.assert_close(lean[name], value, rtol=1e-10, atol=1e-12, msg=name)


def test_none_op_is_left_out_of_sums_but_kept_when_alone():
    mixed = MixedOp(("none", "skip_connect"), 4, 1).double()
    x = batch()
    w = torch.tensor([0.3, 0.7], dtype=torch.float64, requires_grad=True)
    out = mixed(x, w, (RUN, RUN))
    torch.testing.assert_close(out, 0.7 * x)
    gw, = torch.autograd.grad(out.sum(), w)
    assert gw[0] == 0 and gw[1] == x.sum()
    alone = mixed(x, None, (RUN, SKIP))
    assert alone is not None and torch.equal(alone, torch.zeros_like(x))


def test_probed_ops_are_computed_from_the_shared_relu():
    """``op.probe`` equals ⟨g, op(x)⟩ computed the plain way, for every op."""
    from nasp.ops import OPS
    from nasp.supernet.probe import ProbeGrad, ProbeInput

    x = batch((3, 4, 8, 8))
    g = ProbeGrad(batch((3, 4, 8, 8), seed=2))
    for name in OPS:
        torch.manual_seed(0)
        op = make_op(name, 4, 1, affine=False).double()
        torch.manual_seed(0)
        ref = make_op(name, 4, 1, affine=False).double()
        with torch.no_grad():
            inp = ProbeInput(x)
            inp.users = 1
            got = op.probe(inp, g) if hasattr(op, "probe") else g.dot(op(x))
            want = (g.g * ref(x)).sum()
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)
        for (n, a), b in zip(op.named_buffers(), ref.buffers()):
            torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"{name} {n}")


@pytest.mark.parametrize("fmt", FORMATS)
def test_probes_in_architecture_steps_run_as_flat_torch_calls(fmt, monkeypatch):
    """With the BNs frozen (every architecture step), conv ops are probed without their module
    calls; the value is the plain ⟨g, op(x)⟩, the op's modules are never called, and no
    running statistic moves. Includes stride 2, where the slice of ``g`` is not dense."""
    from nasp.ops import OPS, _AfterReLU
    from nasp.supernet.freeze import batch_norms, frozen_batch_stats
    from nasp.supernet.probe import ProbeGrad, ProbeInput

    def no_module_calls(self, r):
        raise AssertionError("a frozen probe went through the op's modules")

    x = batch((3, 4, 8, 8), fmt)
    for stride in (1, 2):
        g_full = batch((3, 8, 8 // stride, 8 // stride), fmt, seed=2)
        g = ProbeGrad(g_full[:, 2:6])  # a channel slice, as the cell's concatenation gives
        for name in OPS:
            torch.manual_seed(0)
            op = make_op(name, 4, stride, affine=False).double().to(memory_format=fmt)
            if not isinstance(op, _AfterReLU):
                continue
            torch.manual_seed(0)
            ref = make_op(name, 4, stride, affine=False).double()
            before = [b.clone() for b in op.buffers()]
            monkeypatch.setattr(type(op), "from_relu", no_module_calls)
            with torch.no_grad(), frozen_batch_stats(batch_norms(op)):
                inp = ProbeInput(x)
                inp.users = 1
                got = op.probe(inp, g)
            monkeypatch.undo()
            with torch.no_grad(), frozen_batch_stats(batch_norms(ref)):
                want = (g.g * ref(x)).sum()
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10, msg=name)
            assert all(torch.equal(a, b) for a, b in zip(before, op.buffers())), name


@pytest.mark.parametrize("fmt", FORMATS)
def test_evaluation_fast_paths_equal_layer_by_layer(fmt):
    """BN folded into the convolution before it, FactorizedReduce as one convolution: the
    same outputs as running every torch module, with non-trivial BN statistics and affines."""
    from nasp.genotype import GENOTYPES
    from nasp.models import build_eval_model
    from nasp.ops import module_by_module

    torch.manual_seed(0)
    net = build_eval_model(GENOTYPES["cnn"]["DARTS_V2"], 3, 10, 16, channels=4,
                           layers=3).double().to(memory_format=fmt)
    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.uniform_(-0.5, 0.5)
    net.eval()
    x = batch((3, 3, 16, 16), fmt)
    with torch.no_grad():
        fast = net(x)
        with module_by_module():
            plain = net(x)
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)
    search = tiny_net("nasp-7").to(memory_format=fmt).eval()
    strategy = make_strategy("nasp", "nasp-7", seed=0)
    xs = tiny_batch()[0].contiguous(memory_format=fmt)
    with torch.no_grad():
        fast = search(xs, strategy.weighting())
        with module_by_module():
            plain = search(xs, strategy.weighting())
    torch.testing.assert_close(fast, plain, rtol=1e-10, atol=1e-10)


def test_probes_pool_each_input_once():
    """Every edge that max-pools the same node shares one pooled map (nasp-7: a normal cell's
    14 edges read 5 nodes), and the map is dropped after its last reader."""
    from nasp.supernet.probe import ProbeInput

    net = tiny_net("nasp-7")
    strategy = make_strategy("nasp", "nasp-7", seed=1, init_noise=0.2)
    calls, inputs = [0], []
    real_forward, real_init = MaxPool.forward, ProbeInput.__init__

    def counting(self, x):
        if not torch.is_grad_enabled():
            calls[0] += 1
        return real_forward(self, x)

    def tracking(self, x):
        real_init(self, x)
        inputs.append(self)

    MaxPool.forward, ProbeInput.__init__ = counting, tracking
    try:
        strategy.arch_gradient(context(net), tiny_batch())
    finally:
        MaxPool.forward, ProbeInput.__init__ = real_forward, real_init
    k = get_space("nasp-7").cells["normal"].ops.index("max_pool_3x3")
    probed = sum(strategy.selection[c.cell_type][e] != k for c in net.cells
                 for e in range(len(c.edges)))
    assert calls[0] <= len(inputs) < probed
    assert all(not inp._memo for inp in inputs)
