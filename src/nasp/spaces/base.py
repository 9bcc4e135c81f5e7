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
    discrete architecture (``None``: every edge is kept, only its op is chosen). The cell output
    combines ``output`` (default: every intermediate node). CNN cells: inputs=2, nodes=4, keep=2
    (14 edges). Recurrent cells: inputs=1 (the node computed from x_t and h_{t-1}), nodes=8,
    keep=1 (36 edges). NAS-Bench-201 cells: inputs=1, nodes=3, keep=None, output=(3,).
    """

    ops: tuple[str, ...]
    nodes: int
    inputs: int
    keep: int | None
    output: tuple[int, ...] | None = None
    reduction: bool = False  # edges from the cell inputs have stride 2 (CNN reduction cells)

    def stride(self, edge: int) -> int:
        """The stride of edge ``edge``'s ops: 2 from a reduction cell's inputs, else 1."""
        return 2 if self.reduction and self.edges[edge][1] < self.inputs else 1

    def kept(self, node: int) -> int:
        """How many incoming edges intermediate node ``node`` keeps in a discrete cell."""
        n = self.inputs + node
        return n if self.keep is None else min(self.keep, n)

    @property
    def num_kept(self) -> int:
        """Edges of a discrete cell (the length of its genotype's edge list)."""
        return sum(self.kept(i) for i in range(self.nodes))

    @cached_property
    def final_ops(self) -> tuple[int, ...]:
        """Op columns that may name an edge of a final architecture - the one rule for
        ``none`` across strategies. Where edges are chosen (``keep`` set), ``none`` would only
        duplicate "edge not kept" and is a relaxation device of the mixtures (DARTS, ASAP), so it
        never wins an edge (DARTS's derivation). Where every edge is kept (NAS-Bench-201),
        ``none`` is a real choice: it removes the edge."""
        if self.keep is None:
            return tuple(range(self.num_ops))
        return tuple(k for k, op in enumerate(self.ops) if op != "none")

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
        """The node indices a cell's output combines (default: every intermediate node)."""
        if self.output is not None:
            return self.output
        return tuple(range(self.inputs, self.inputs + self.nodes))


@dataclass(frozen=True)
class SearchSpace:
    """A named space: its task ("cnn" or "lm"), one ``CellSpec`` per cell type, and the
    registry its op names refer to (``None``: not modules, e.g. recurrent activations)."""

    name: str
    task: str
    cells: dict[str, CellSpec]
    description: str = ""
    op_registry: Registry | None = None
    family: str = "darts"  # the network its cells live in: darts, rnn or nb201


SPACES: Registry[SearchSpace] = Registry("search space", "--space")


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name)
