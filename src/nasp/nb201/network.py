"""The benchmark's fixed network around its cells, shared by the search network
(``nasp.supernet.nb201``) and the evaluation network (``nasp.models.nb201``).

It lives with the benchmark, below both: the two networks must build the same skeleton (so the
supernet under a one-hot weighting is the evaluation network of that cell), and neither should
import the other to get it.
"""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

from nasp.nb201.ops import ResidualBlock


def build_network(net: nn.Module, in_channels: int, num_classes: int, channels: int,
                  cells_per_stage: int, make_cell: Callable[[int], nn.Module]) -> None:
    """The benchmark's network around its cells, on ``net``: stem (conv 3x3 + BN), three stages
    of ``make_cell(C)`` at C, 2C, 4C joined by residual blocks, BN-ReLU, global average pool and
    a linear classifier. One builder for the search and the evaluation network, so the supernet
    under a one-hot weighting stays the evaluation network of that cell."""
    net.stem = nn.Sequential(
        nn.Conv2d(in_channels, channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(channels),
    )
    net.cells = nn.ModuleList()
    c_prev = channels
    for stage, c in enumerate((channels, 2 * channels, 4 * channels)):
        if stage:
            net.cells.append(ResidualBlock(c_prev, c))
        net.cells.extend(make_cell(c) for _ in range(cells_per_stage))
        c_prev = c
    net.lastact = nn.Sequential(nn.BatchNorm2d(c_prev), nn.ReLU(inplace=False))
    net.pool = nn.AdaptiveAvgPool2d(1)
    net.classifier = nn.Linear(c_prev, num_classes)
