"""The benchmark's operations, in their own registry (``name -> factory(C, stride, affine)``),
and the residual block its networks reduce with.

Why a registry of its own rather than entries in ``nasp.ops.OPS``: the names must stay the
benchmark's (cell strings, genotypes and the ground-truth table all say ``avg_pool_3x3``), yet
``avg_pool_3x3`` is not the same op in the two families. DARTS's search cells follow every
pool with a non-affine BN; the benchmark's cells (search and evaluation alike) use the bare
pool. One name cannot map to both in one registry without a flag that the factory signature
has no room for. So DARTS spaces keep ``OPS`` untouched, and the nb201 networks, which only
ever build nb201 cells, take their ops from ``NB201_OPS``. The building blocks are shared with
``nasp.ops`` (ReLU-conv-BN, identity, zeros), so the two families cannot drift apart where
they agree.

The benchmark's ops, all at stride 1 (its cells never reduce): ``none`` zeros;
``skip_connect`` identity; ``nor_conv_1x1`` / ``nor_conv_3x3`` ReLU, conv (padding 0 / 1),
BN; ``avg_pool_3x3`` average pool, stride 1, padding 1, padding not counted, no BN.
"""

from __future__ import annotations

import torch
from torch import nn

from nasp.ops import Identity, OpFactory, ReLUConvBN, Zero
from nasp.registry import Registry

NB201_OPS: Registry[OpFactory] = Registry("NAS-Bench-201 operation",
                                          "--space nb201 (or an nb201 genotype) with operations")


def _stride_one(name: str, stride: int) -> None:
    if stride != 1:  # a bug in the caller: nb201 cells keep the resolution
        raise ValueError(f"NAS-Bench-201 op {name} exists at stride 1 only, got {stride}")


def _none(c: int, stride: int, affine: bool) -> nn.Module:
    _stride_one("none", stride)
    return Zero(1)


def _skip(c: int, stride: int, affine: bool) -> nn.Module:
    _stride_one("skip_connect", stride)
    return Identity()


def _conv(kernel: int) -> OpFactory:
    def make(c: int, stride: int, affine: bool) -> nn.Module:
        _stride_one(f"nor_conv_{kernel}x{kernel}", stride)
        return ReLUConvBN(c, c, kernel, 1, kernel // 2, affine)

    return make


def _avg_pool(c: int, stride: int, affine: bool) -> nn.Module:
    _stride_one("avg_pool_3x3", stride)
    return nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False)


NB201_OPS.register("none", _none)
NB201_OPS.register("skip_connect", _skip)
NB201_OPS.register("nor_conv_1x1", _conv(1))
NB201_OPS.register("nor_conv_3x3", _conv(3))
NB201_OPS.register("avg_pool_3x3", _avg_pool)


def make_op(name: str, c: int, stride: int = 1, affine: bool = True) -> nn.Module:
    """Build a benchmark op (``NaspError`` naming the valid ones if unknown)."""
    return NB201_OPS.get(name)(c, stride, affine)


class ResidualBlock(nn.Module):
    """The benchmark's reduction between stages: ReLU-conv3x3 (stride 2)-BN, ReLU-conv3x3-BN,
    plus a shortcut of 2x2 average pooling (stride 2) and a 1x1 conv. The shortcut pool uses
    ``ceil_mode`` so odd sizes (7x7) give the same side as the strided conv; on even sizes, the
    benchmark's, it is the plain pool."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        self.conv_a = ReLUConvBN(c_in, c_out, 3, 2, 1, affine)
        self.conv_b = ReLUConvBN(c_out, c_out, 3, 1, 1, affine)
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, stride=2, padding=0, ceil_mode=True),
            nn.Conv2d(c_in, c_out, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shortcut(x) + self.conv_b(self.conv_a(x))
