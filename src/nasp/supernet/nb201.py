"""The NAS-Bench-201 search network: the benchmark's fixed skeleton around one searched cell.

Stem (3x3 conv to C, BN); three stages of ``cells_per_stage`` cells at C, 2C, 4C channels with
a residual block between stages (``nasp.nb201.ops.ResidualBlock``); BN, ReLU, global average
pooling, linear. Every cell shares the weighting ``weighting["cell"]`` (the benchmark searches
one cell, repeated), and runs it exactly as ``SearchCNN``'s cells do: RUN ops with a graph,
PROBE ops only for their architecture gradient (``probe_node``), SKIP ops not at all.

BN: the cell ops are non-affine (the architecture weights scale them), as in DARTS's search
network; the stem, the residual blocks and the final BN are affine, as in the benchmark's
search networks, since no architecture weight touches them. Module names match
``nasp.models.nb201.NB201Net`` (``cells.{i}.edges.{e}`` there is ``cells.{i}.edges.{e}.ops.{k}``
here), so the weights of one op can be copied between the two.
"""

from __future__ import annotations

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.nb201.network import build_network
from nasp.nb201.ops import make_op
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.supernet.cnn import node_output
from nasp.supernet.mixed import MixedOp
from nasp.supernet.weighting import CellWeighting, Weighting

CELL = "cell"


class NB201SearchCell(nn.Module):
    """Nodes 1..3 of the cell, each summing its mixed edges from every earlier node."""

    def __init__(self, spec: CellSpec, c: int) -> None:
        super().__init__()
        self.spec = spec
        self.edges = nn.ModuleList(MixedOp(spec.ops, c, 1, make=make_op) for _ in spec.edges)

    def forward(self, x: torch.Tensor, w: CellWeighting) -> torch.Tensor:
        states = [x]
        inputs: dict = {}  # one ProbeInput per probed state: the probes of all nodes share it
        for node_edges in self.spec.node_edges:
            states.append(node_output(self.spec, self.edges, node_edges, states, w,
                                      empty=lambda: torch.zeros_like(x), inputs=inputs))
        if len(self.spec.concat) == 1:
            return states[self.spec.concat[0]]
        return torch.cat([states[n] for n in self.spec.concat], dim=1)


class NB201SearchNet(nn.Module):
    """The search network of the ``nb201`` space. ``forward(x, weighting)`` returns logits;
    ``weighting["cell"]`` is the (6, 5) weighting every cell runs."""

    def __init__(
        self,
        space: SearchSpace,
        in_channels: int,
        num_classes: int,
        channels: int = 16,
        cells_per_stage: int = 5,
    ) -> None:
        super().__init__()
        if set(space.cells) != {CELL}:
            raise NaspError(f"space {space.name!r} is not a NAS-Bench-201 space",
                            "the nb201 network needs one cell type named 'cell' (--space nb201)")
        if channels < 1 or cells_per_stage < 1:
            raise NaspError(f"invalid nb201 network size: channels {channels}, "
                            f"{cells_per_stage} cells per stage",
                            "use channels >= 1 and at least one cell per stage")
        spec = space.cells[CELL]
        build_network(self, in_channels, num_classes, channels, cells_per_stage,
                      lambda c: NB201SearchCell(spec, c))

    def forward(self, x: torch.Tensor, weighting: Weighting) -> torch.Tensor:
        w = weighting[CELL]
        s = self.stem(x)
        for cell in self.cells:
            s = cell(s, w) if isinstance(cell, NB201SearchCell) else cell(s)
        return self.classifier(self.pool(self.lastact(s)).flatten(1))
