"""The description of a cell DAG that every supernet, strategy and genotype shares."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

from nasp.registry import Registry


@dataclass(frozen=True)
class CellSpec:
    """One cell type of a space.

    A cell has ``inputs`` input nodes and ``nodes`` intermediate nodes; intermediate node ``i``
    takes one edge from every earlier node (``inputs + i`` edges) and keeps ``keep`` of them in a
    discrete architecture. CNN cells: inputs=2, nodes=4, keep=2 (14 edges). Recurrent cells:
    inputs=1 (the node computed from x_t and h_{t-1}), nodes=8, keep=1 (36 edges).
    """

    ops: tuple[str, ...]
    nodes: int
    inputs: int
    keep: int

    @cached_property
    def edges(self) -> tuple[tuple[int, int], ...]:
        """``edges[e] = (node, input)``: edge e feeds ``node`` from input index ``input``."""
        return tuple((i, j) for i in range(self.nodes) for j in range(self.inputs + i))

    @cached_property
    def node_edges(self) -> tuple[range, ...]:
        """The slice of edge indices feeding each intermediate node."""
        out, start = [], 0
        for i in range(self.nodes):
            out.append(range(start, start + self.inputs + i))
            start += self.inputs + i
        return tuple(out)

    @property
    def num_edges(self) -> int:
        return len(self.edges)

    @property
    def num_ops(self) -> int:
        return len(self.ops)

    @property
    def concat(self) -> tuple[int, ...]:
        """The node indices a cell's output combines: every intermediate node."""
        return tuple(range(self.inputs, self.inputs + self.nodes))


@dataclass(frozen=True)
class SearchSpace:
    """A named space: its task ("cnn" or "lm") and one ``CellSpec`` per cell type."""

    name: str
    task: str
    cells: dict[str, CellSpec]
    description: str = ""


SPACES: Registry[SearchSpace] = Registry("search space", "--space")


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name)
