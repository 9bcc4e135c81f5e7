"""The CNN search network (DARTS/NASP): stem, stacked cells, global pooling, classifier.

The network runs whatever weighting it is given; which ops exist on an edge comes from the
space. Channels and image size come from the data, so 1x28x28 and 3x32x32 inputs both work.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from nasp.compiled import compiler_of
from nasp.ops import FactorizedReduce, GlobalAvgPool, ReLUConvBN, reduction_layers
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.supernet.mixed import MixedOp
from nasp.supernet.probe import ProbeInput, probe_node
from nasp.supernet.weighting import PROBE, CellWeighting, Weighting


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
        self.edges = nn.ModuleList(MixedOp(spec.ops, c, spec.stride(e))
                                   for e in range(spec.num_edges))

    def forward(self, r0: torch.Tensor, r1: torch.Tensor, w: CellWeighting) -> torch.Tensor:
        """``r0``, ``r1``: the ReLUs of the two previous cells' outputs. Both preprocessing
        blocks start with that ReLU, and every output feeds two cells: the network computes
        and keeps it once per output instead of once per reader."""
        compiler = compiler_of(self) if torch.is_grad_enabled() else None
        if compiler is None:
            states = [self.preprocess0.from_relu(r0), self.preprocess1.from_relu(r1)]
        else:
            states = [compiler.forward(self.preprocess0, r0, from_relu=True),
                      compiler.forward(self.preprocess1, r1, from_relu=True)]
        inputs: dict[int, ProbeInput] = {}  # one per probed state: probes share work on it
        for node_edges in self.spec.node_edges:
            states.append(node_output(self.spec, self.edges, node_edges, states, w,
                                      inputs=inputs))
        return torch.cat([states[n] for n in self.spec.concat], dim=1)


def node_output(
    spec: CellSpec,
    edges: nn.ModuleList,
    node_edges: range,
    states: list[torch.Tensor],
    w: CellWeighting,
    empty: Callable[[], torch.Tensor] | None = None,
    inputs: dict[int, ProbeInput] | None = None,
) -> torch.Tensor:
    """One intermediate node: the sum of what the plan RUNs on its incoming edges, with the
    architecture gradient of its PROBE ops attached (``probe_node``). A node on which nothing
    runs is ``empty()`` where the space allows it (NAS-Bench-201: zeros, as if every edge were
    ``none``); without ``empty`` it means the weighting is invalid. ``inputs``: one
    ``ProbeInput`` per probed state of the cell, so the probes of all its nodes share work."""
    probing = w.weights is not None and torch.is_grad_enabled()
    inputs = {} if inputs is None else inputs
    total, probes = None, []
    for e in node_edges:
        _, j = spec.edges[e]
        row = None if w.weights is None else w.weights[e]
        y = edges[e](states[j], row, w.plan[e])
        if y is not None:
            total = y if total is None else total + y
        if not probing:
            continue
        for k, code in enumerate(w.plan[e]):
            if code == PROBE:
                inp = inputs.get(j)
                if inp is None:
                    inp = inputs[j] = ProbeInput(states[j])
                inp.users += 1
                probes.append((e, k, edges[e].ops[k], inp))
    if total is None:
        if empty is None:
            raise RuntimeError("a node has no executed incoming edge; the weighting is invalid")
        total = empty()
    if probes:
        total = probe_node(total, w.weights, probes)
    return total


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
        self.relu = nn.ReLU()  # of each cell output, shared by the two cells that read it
        self.pool = GlobalAvgPool()
        self.classifier = nn.Linear(c_prev, num_classes)

    def forward(self, x: torch.Tensor, weighting: Weighting) -> torch.Tensor:
        compiler = compiler_of(self) if torch.is_grad_enabled() else None
        out = self.stem(x) if compiler is None else compiler.forward(self.stem, x)
        r0 = r1 = self.relu(out)
        for i, cell in enumerate(self.cells):
            out = cell(r0, r1, weighting[cell.cell_type])
            if i + 1 < len(self.cells):
                r0, r1 = r1, self.relu(out)
        return self.classifier(self.pool(out))
