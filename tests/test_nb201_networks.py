"""The nb201 space's networks: search network, evaluation network, benchmark ops, nasp info."""

import re

import pytest
import torch
from torch import nn

from helpers import context, make_strategy, tiny_batch
from nasp.cli import main
from nasp.errors import NaspError
from nasp.genotype import get_genotype
from nasp.models import build_eval_model, count_flops, count_params
from nasp.models.cnn import EvalCNN
from nasp.models.nb201 import NB201Net
from nasp.nb201.ops import make_op
from nasp.ops import PoolBN
from nasp.spaces import get_space
from nasp.supernet.nb201 import NB201SearchNet
from nasp.supernet.weighting import PROBE, SKIP, CellWeighting, dense_plan, selection_plan

SPACE = get_space("nb201")
OPS = SPACE.cells["cell"].ops
BEST = ("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|"
        "+|skip_connect~0|nor_conv_3x3~1|nor_conv_1x1~2|")
MIXED = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_3x3~2|"
ALL_NONE = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"


def selection(arch):
    return tuple(OPS.index(op) for op, _ in get_genotype(arch).cells["cell"])


def supernet(in_channels=3, classes=5):
    torch.manual_seed(0)
    return NB201SearchNet(SPACE, in_channels, classes, channels=4, cells_per_stage=2).double()


def eval_net_sharing_weights(net, arch, in_channels=3, classes=5):
    """The evaluation network of ``arch`` holding the search network's weights (its affine BN
    keeps scale 1 and shift 0, which is what the search network's non-affine BN computes)."""
    sel = selection(arch)
    ev = NB201Net(get_genotype(arch), in_channels, classes, channels=4, cells_per_stage=2).double()
    src, own = net.state_dict(), ev.state_dict()
    state = {}
    for name, value in own.items():
        m = re.fullmatch(r"(cells\.\d+\.edges\.(\d+))\.(.+)", name)
        key = f"{m[1]}.ops.{sel[int(m[2])]}.{m[3]}" if m else name
        state[name] = src[key] if key in src else value
    ev.load_state_dict(state)
    return ev


@pytest.mark.parametrize("arch", [BEST, MIXED, ALL_NONE])
@pytest.mark.parametrize("dense", [False, True])
def test_supernet_at_a_one_hot_weighting_is_the_cells_network(arch, dense):
    net = supernet()
    ev = eval_net_sharing_weights(net, arch)
    sel = selection(arch)
    if dense:  # every op runs, weighted by the one-hot rows (DARTS's mixture at a vertex)
        bar = torch.zeros(6, 5, dtype=torch.float64)
        bar[range(6), sel] = 1.0
        w = {"cell": CellWeighting(bar, dense_plan(6, 5))}
    else:  # only the chosen ops run (NASP's weight step)
        w = {"cell": CellWeighting(None, selection_plan(sel, 5))}
    x = torch.randn(4, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(net(x, w), ev(x), rtol=0, atol=1e-12)
    net.eval()
    ev.eval()  # running statistics were updated alike by the training-mode pass
    torch.testing.assert_close(net(x, w), ev(x), rtol=0, atol=1e-12)


def test_nasp_lean_gradient_equals_the_dense_gradient_on_nb201():
    net = supernet(in_channels=1)
    strategy = make_strategy("nasp", SPACE, seed=1)
    a = torch.full((6, 5), 0.3, dtype=torch.float64)
    a[range(6), selection(MIXED.replace("none~0", "avg_pool_3x3~0"))] = 0.9  # no zero node
    strategy.arch["cell"].copy_(a)
    strategy.restored()
    ctx = context(net)
    batch = tiny_batch(size=8)
    (lean,) = strategy.arch_gradient(ctx, batch)
    bar = strategy.A_bar["cell"].clone().requires_grad_(True)
    (full,) = torch.autograd.grad(
        ctx.loss(batch, {"cell": CellWeighting(bar, dense_plan(6, 5))}), [bar])
    torch.testing.assert_close(lean, full, rtol=1e-9, atol=1e-12)
    # every op that is not `none` has a gradient, also the unselected (probed) ones
    assert (lean[:, 1:] != 0).all()
    assert (lean[:, 0] == 0).all()  # `none` adds zeros: its gradient <dL/ds, 0> is 0
    assert all(p.grad is None for p in net.parameters())


def test_skip_and_probe_codes_and_a_node_with_nothing_running():
    net = supernet()
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    sel = selection(MIXED)
    runs_none = selection_plan((0, *sel[1:]), 5)  # edge 0 (node 1's only edge) runs `none`
    skipped = ((SKIP,) * 5, *runs_none[1:])  # ... or runs nothing at all: node 1 is zeros
    net.eval()
    out = net(x, {"cell": CellWeighting(None, runs_none)})
    torch.testing.assert_close(net(x, {"cell": CellWeighting(None, skipped)}), out,
                               rtol=0, atol=0)
    # probing node 1's ops although none of them runs still gives their gradients
    bar = torch.zeros(6, 5, dtype=torch.float64)
    bar[range(1, 6), sel[1:]] = 1.0
    bar.requires_grad_(True)
    probed = ((PROBE,) * 5, *runs_none[1:])
    loss = net(x, {"cell": CellWeighting(bar, probed)}).square().sum()
    (g,) = torch.autograd.grad(loss, [bar])
    assert (g[0, 1:] != 0).all() and g[0, 0] == 0


def test_benchmark_ops_and_the_darts_ones_stay_apart():
    pool = make_op("avg_pool_3x3", 4, 1, affine=False)
    assert isinstance(pool, nn.AvgPool2d) and not pool.count_include_pad  # no BN after it
    x = torch.arange(16.0).view(1, 1, 4, 4)
    assert pool(x)[0, 0, 0, 0] == (0 + 1 + 4 + 5) / 4  # padding not counted
    net = supernet()
    mixed = net.cells[0].edges[0].ops
    assert isinstance(mixed[OPS.index("avg_pool_3x3")], nn.AvgPool2d)
    conv = mixed[OPS.index("nor_conv_3x3")]
    assert [type(m) for m in conv] == [nn.ReLU, nn.Conv2d, nn.BatchNorm2d]
    assert conv[1].kernel_size == (3, 3) and not conv[2].affine
    assert mixed[OPS.index("nor_conv_1x1")][1].kernel_size == (1, 1)
    from nasp.ops import make_op as darts_op  # DARTS's search pool keeps its BN
    assert isinstance(darts_op("avg_pool_3x3", 4, 1, affine=False), PoolBN)
    ev = build_eval_model(get_genotype(BEST), 3, 10, 32, channels=4, layers=3)
    assert ev.cells[0].edges[0][2].affine


def test_network_layout_and_benchmark_sizes():
    net = build_eval_model(get_genotype(BEST), 3, 10, 32)  # the benchmark's size: C=16, N=5
    assert isinstance(net, NB201Net) and len(net.cells) == 17  # 15 cells + 2 residual blocks
    # NAS-Bench-201 reports 1.073 MB / 153.27 M FLOPs for this cell on CIFAR-10, and
    # 1.53 MB / 220.11 M for the all-nor_conv_3x3 cell
    assert count_params(net) == 1_073_466
    assert round(count_flops(net, (3, 32, 32)) / 1e6, 2) == 153.27
    conv3 = BEST.replace("skip_connect", "nor_conv_3x3").replace("nor_conv_1x1", "nor_conv_3x3")
    big = build_eval_model(get_genotype(conv3), 3, 10, 32)
    assert count_params(big) == 1_531_546
    assert round(count_flops(big, (3, 32, 32)) / 1e6, 2) == 220.12
    s = NB201SearchNet(SPACE, 3, 10)
    assert len(s.cells) == 17 and s.classifier.in_features == 64


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 16, 16), (3, 7, 7)])
def test_networks_take_any_image_shape(shape):
    net = supernet(shape[0], 7)
    w = {"cell": CellWeighting(None, selection_plan(selection(MIXED), 5))}
    assert net(torch.randn(2, *shape, dtype=torch.float64), w).shape == (2, 7)
    ev = build_eval_model(get_genotype(MIXED), shape[0], 7, shape[1:], channels=4, layers=3,
                          drop_path_prob=0.5)
    ev.train()
    assert ev(torch.randn(2, *shape)).shape == (2, 7)


def test_wrong_uses_are_errors():
    geno = get_genotype(BEST)
    with pytest.raises(NaspError, match="no auxiliary head"):
        build_eval_model(geno, 3, 10, 32, auxiliary=True)
    with pytest.raises(NaspError, match="multiple of 3"):
        build_eval_model(geno, 3, 10, 32, layers=20)
    with pytest.raises(NaspError, match="NAS-Bench-201 network, not DARTS's"):
        EvalCNN(geno, 3, 10)
    with pytest.raises(NaspError, match="cannot build the NAS-Bench-201 network"):
        NB201Net(get_genotype("DARTS_V2"), 3, 10)
    with pytest.raises(NaspError, match="not a NAS-Bench-201 space"):
        NB201SearchNet(get_space("darts"), 3, 10)


def test_info_prints_sizes_and_the_benchmark_accuracies(capsys):
    assert main(["info", "--genotype", BEST]) == 0
    out = capsys.readouterr().out
    assert "15 cells, C=16" in out and "parameters: 1.073 M" in out
    assert "multiply-adds: 153.3 M" in out
    assert "NAS-Bench-201 cell 6111" in out and "CIFAR-10 94.37%" in out
    assert "CIFAR-100 73.22%" in out and "ImageNet16-120 46.71%" in out
    assert main(["info", "--genotype", BEST.replace("skip_connect", "conv_3x3")]) == 2
    assert "unknown NAS-Bench-201 op 'conv_3x3'" in capsys.readouterr().err
