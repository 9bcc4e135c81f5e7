"""Candidate operations of CNN cells: one registry, ``name -> factory(C, stride, affine)``.

Adding an operation is one function decorated with ``@OPS.register("name")``. Search cells
build every op with ``affine=False`` (the architecture weights play the role of the BN scale);
evaluation networks use ``affine=True``. Definitions follow DARTS/NASP (see REFERENCE.md).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasp.registry import Registry

OpFactory = Callable[[int, int, bool], nn.Module]
OPS: Registry[OpFactory] = Registry("operation", "--space (or a genotype) with operations")


class ReLUConvBN(nn.Sequential):
    """ReLU, one convolution, BN: the building block of preprocessing and plain conv ops."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            nn.ReLU(inplace=False),
            nn.Conv2d(c_in, c_out, kernel, stride=stride, padding=padding, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class DilConv(nn.Sequential):
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
            nn.Conv2d(c_in, c_in, kernel, stride, padding, dilation=dilation, groups=c_in,
                      bias=False),
            nn.Conv2d(c_in, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out, affine=affine),
        )


class SepConv(nn.Sequential):
    """Two stacked DilConv blocks with dilation 1 (the first carries the stride)."""

    def __init__(
        self, c_in: int, c_out: int, kernel: int, stride: int, padding: int, affine: bool = True
    ) -> None:
        super().__init__(
            DilConv(c_in, c_in, kernel, stride, padding, 1, affine),
            DilConv(c_in, c_out, kernel, 1, padding, 1, affine),
        )


class FacConv(nn.Sequential):
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
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


class Zero(nn.Module):
    """The ``none`` op: zeros with the output's shape (strided at stride 2)."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            return x.mul(0.0)
        return x[:, :, :: self.stride, :: self.stride].mul(0.0)


class FactorizedReduce(nn.Module):
    """Halve the resolution without losing half the pixels: two 1x1 stride-2 convs, the second
    on the input shifted by one pixel, concatenated. Odd sizes (e.g. 7x7 from 28x28 inputs) are
    padded so both halves agree."""

    def __init__(self, c_in: int, c_out: int, affine: bool = True) -> None:
        super().__init__()
        if c_out % 2:
            raise ValueError(f"FactorizedReduce needs an even channel count, got {c_out}")
        self.relu = nn.ReLU(inplace=False)
        self.conv_1 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.conv_2 = nn.Conv2d(c_in, c_out // 2, 1, stride=2, bias=False)
        self.bn = nn.BatchNorm2d(c_out, affine=affine)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu(x)
        if x.shape[-1] % 2 or x.shape[-2] % 2:
            x = nn.functional.pad(x, (0, x.shape[-1] % 2, 0, x.shape[-2] % 2))
        shifted = nn.functional.pad(x[:, :, 1:, 1:], (0, 1, 0, 1))
        return self.bn(torch.cat([self.conv_1(x), self.conv_2(shifted)], dim=1))


class PoolBN(nn.Sequential):
    """A pooling op followed by BN; search cells normalise pool outputs so their scale matches
    the convolutions (DARTS does this in the search network only)."""

    def __init__(self, pool: nn.Module, c: int) -> None:
        super().__init__(pool, nn.BatchNorm2d(c, affine=False))


def _pool(kind: str, k: int) -> OpFactory:
    def make(c: int, stride: int, affine: bool) -> nn.Module:
        if kind == "avg":
            pool: nn.Module = nn.AvgPool2d(k, stride=stride, padding=k // 2,
                                           count_include_pad=False)
        else:
            pool = nn.MaxPool2d(k, stride=stride, padding=k // 2)
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


def make_op(name: str, c: int, stride: int, affine: bool) -> nn.Module:
    """Build a registered operation (raises ``NaspError`` naming the valid ops if unknown)."""
    return OPS.get(name)(c, stride, affine)


def op_param_count(name: str, c: int = 12) -> int:
    """Parameters of an op at stride 1, BN excluded: the size measure of the regularizer.

    The NASP release uses these counts at C=12 (sep_conv_3x3 504, conv_3x3 1296, ...); BN is
    left out so the cost reflects the convolution itself."""
    module = make_op(name, c, 1, affine=False)
    return sum(
        p.numel()
        for m in module.modules()
        if not isinstance(m, nn.modules.batchnorm._BatchNorm)
        for p in m.parameters(recurse=False)
    )
