"""The evaluation network of a NAS-Bench-201 cell: the benchmark's network, affine BN.

Stem (3x3 conv to C, BN); three stages of ``cells_per_stage`` copies of the cell at C, 2C, 4C
channels with a residual block between stages; BN, ReLU, global average pooling, linear. The
benchmark trains it with C=16 and 5 cells per stage. Module names match the search network
(``nasp.supernet.nb201``), so a cell's weights can be carried between the two.

``none`` edges are not executed (they add zeros); a node with only ``none`` edges is zeros.
Dead ends are not executed either: an op whose node cannot reach the cell output (it feeds only
``none`` edges) changes nothing the network computes, so it is skipped, as a runtime that
prunes unused graph would (``nasp.cost_model.live_edges``, the rule cost tables use).
"""

from __future__ import annotations

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.models.drop_path import drop_path, drops
from nasp.nb201.network import build_network
from nasp.nb201.ops import make_op
from nasp.nb201.strings import OP_NAMES
from nasp.ops import Identity, Zero
from nasp.spaces.nb201 import NB201_CELL
from nasp.spaces.selection import live_edges

BENCHMARK_CHANNELS = 16
BENCHMARK_CELLS_PER_STAGE = 5


class NB201Cell(nn.Module):
    """One discrete cell: node i sums the chosen op of each of its incoming edges."""

    def __init__(self, pairs: tuple[tuple[str, int], ...], c: int) -> None:
        super().__init__()
        self.inputs = [int(j) for _, j in pairs]
        self.edges = nn.ModuleList(make_op(op, c, 1, affine=True) for op, _ in pairs)
        live = set(live_edges(tuple(OP_NAMES.index(op) for op, _ in pairs), NB201_CELL,
                              "free"))
        self.runs = [e in live and not isinstance(op, Zero) for e, op in enumerate(self.edges)]
        # identity edges carry the signal through the cell; dropping them would cut it (DARTS)
        self.droppable = [not isinstance(op, Identity) for op in self.edges]

    def forward(self, x: torch.Tensor, drop_prob: float | torch.Tensor = 0.0) -> torch.Tensor:
        states = [x]
        drop = drops(self.training, drop_prob)
        for node_edges in NB201_CELL.node_edges:
            total = None
            for e in node_edges:
                if not self.runs[e]:
                    continue
                y = self.edges[e](states[self.inputs[e]])
                if drop and self.droppable[e]:
                    y = drop_path(y, drop_prob)
                total = y if total is None else total + y
            states.append(torch.zeros_like(x) if total is None else total)
        return states[NB201_CELL.concat[0]]


class NB201Net(nn.Module):
    """The benchmark's network for one nb201 genotype; returns logits. ``drop_path_prob`` (0 in
    the benchmark) may be set per epoch by the training loop, as for ``EvalCNN``."""

    def __init__(
        self,
        genotype: Genotype,
        in_channels: int,
        num_classes: int,
        channels: int = BENCHMARK_CHANNELS,
        cells_per_stage: int = BENCHMARK_CELLS_PER_STAGE,
        drop_path_prob: float = 0.0,
    ) -> None:
        super().__init__()
        if genotype.family != "nb201":
            raise NaspError(f"a {genotype.family} genotype cannot build the NAS-Bench-201 "
                            "network", "pass an nb201 genotype or cell string")
        if channels < 1 or cells_per_stage < 1:
            raise NaspError(f"invalid nb201 network size: channels {channels}, "
                            f"{cells_per_stage} cells per stage",
                            "use channels >= 1 and at least one cell per stage "
                            f"(the benchmark's: {BENCHMARK_CHANNELS} and "
                            f"{BENCHMARK_CELLS_PER_STAGE})")
        genotype.validate()
        self.genotype = genotype
        self.channels = channels
        self.cells_per_stage = cells_per_stage
        self.drop_path_prob = drop_path_prob
        pairs = genotype.cells["cell"]
        build_network(self, in_channels, num_classes, channels, cells_per_stage,
                      lambda c: NB201Cell(pairs, c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stem(x)
        for cell in self.cells:
            s = cell(s, self.drop_path_prob) if isinstance(cell, NB201Cell) else cell(s)
        return self.classifier(self.pool(self.lastact(s)).flatten(1))
