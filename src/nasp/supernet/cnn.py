"""The CNN search network (DARTS/NASP): stem, stacked cells, global pooling, classifier.

The network runs whatever weighting it is given; which ops exist on an edge comes from the
space. Channels and image size come from the data, so 1x28x28 and 3x32x32 inputs both work.
"""

from __future__ import annotations

import torch
from torch import nn

from nasp.ops import FactorizedReduce, ReLUConvBN
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.supernet.mixed import MixedOp
from nasp.supernet.probe import probe_node
from nasp.supernet.weighting import PROBE, CellWeighting, Weighting


def reduction_layers(layers: int) -> tuple[int, ...]:
    """Cells at 1/3 and 2/3 depth halve the resolution and double the channels."""
    return (layers // 3, 2 * layers // 3)


class SearchCell(nn.Module):
    def __init__(
        self,
        spec: CellSpec,
        c_prev_prev: int,
        c_prev: int,
        c: int,
        reduction: bool,
        reduction_prev: bool,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.reduction = reduction
        self.cell_type = "reduce" if reduction else "normal"
        if reduction_prev:
            self.preprocess0: nn.Module = FactorizedReduce(c_prev_prev, c, affine=False)
        else:
            self.preprocess0 = ReLUConvBN(c_prev_prev, c, 1, 1, 0, affine=False)
        self.preprocess1 = ReLUConvBN(c_prev, c, 1, 1, 0, affine=False)
        self.edges = nn.ModuleList(
            MixedOp(spec.ops, c, 2 if reduction and j < spec.inputs else 1)
            for _, j in spec.edges
        )

    def forward(self, s0: torch.Tensor, s1: torch.Tensor, w: CellWeighting) -> torch.Tensor:
        states = [self.preprocess0(s0), self.preprocess1(s1)]
        for node_edges in self.spec.node_edges:
            total, probes = None, []
            for e in node_edges:
                _, j = self.spec.edges[e]
                row = None if w.weights is None else w.weights[e]
                y = self.edges[e](states[j], row, w.plan[e])
                if y is not None:
                    total = y if total is None else total + y
                probes.extend((e, k, self.edges[e].ops[k], states[j])
                              for k, code in enumerate(w.plan[e]) if code == PROBE)
            if total is None:
                raise RuntimeError("a node has no executed incoming edge; the weighting is invalid")
            if probes and w.weights is not None and torch.is_grad_enabled():
                total = probe_node(total, w.weights, probes)
            states.append(total)
        return torch.cat([states[n] for n in self.spec.concat], dim=1)


class SearchCNN(nn.Module):
    """The search network. ``forward(x, weighting)`` returns logits."""

    def __init__(
        self,
        space: SearchSpace,
        in_channels: int,
        num_classes: int,
        channels: int = 16,
        layers: int = 8,
        stem_multiplier: int = 3,
    ) -> None:
        super().__init__()
        normal, reduce = space.cells["normal"], space.cells["reduce"]
        multiplier = normal.nodes
        c_curr = stem_multiplier * channels
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, c_curr, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_curr),
        )
        c_prev_prev, c_prev, c_curr = c_curr, c_curr, channels
        self.cells = nn.ModuleList()
        reduction_prev = False
        reductions = reduction_layers(layers)
        for i in range(layers):
            reduction = i in reductions
            if reduction:
                c_curr *= 2
            cell = SearchCell(reduce if reduction else normal, c_prev_prev, c_prev, c_curr,
                              reduction, reduction_prev)
            self.cells.append(cell)
            reduction_prev = reduction
            c_prev_prev, c_prev = c_prev, multiplier * c_curr
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, weighting: Weighting) -> torch.Tensor:
        s0 = s1 = self.stem(x)
        for cell in self.cells:
            s0, s1 = s1, cell(s0, s1, weighting[cell.cell_type])
        return self.classifier(self.pool(s1).flatten(1))
