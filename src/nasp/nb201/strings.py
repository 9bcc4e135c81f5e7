"""NAS-Bench-201 cell strings: ``|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|...~0|...~1|...~2|``.

A cell has four nodes: node 0 is the cell input, nodes 1..3 each sum one operation applied to
every earlier node, and node 3 is the output. The string lists the nodes 1..3 separated by
``+``, each as ``|op~j|`` for its inputs j = 0..node-1 in order. nasp's flat edge order is the
same (node 1: input 0; node 2: inputs 0, 1; node 3: inputs 0, 1, 2), so a cell is the tuple of
its six (op, input) pairs and converting is a matter of formatting, not reordering.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

from nasp.errors import NaspError

# The benchmark's operation vocabulary, in its own order (column order of nasp's ``nb201`` space).
OP_NAMES = ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")
NODES = 3
NUM_EDGES = NODES * (NODES + 1) // 2  # 6
NUM_CELLS = len(OP_NAMES) ** NUM_EDGES  # 15,625

Cell = tuple[tuple[str, int], ...]

_EXAMPLE = "|nor_conv_3x3~0|+|none~0|nor_conv_1x1~1|+|skip_connect~0|none~1|avg_pool_3x3~2|"


def edge_inputs() -> tuple[int, ...]:
    """The input node of each of the six edges, in nasp's (and the string's) order."""
    return tuple(j for node in range(1, NODES + 1) for j in range(node))


def looks_like_arch_str(text: str) -> bool:
    """Whether ``text`` is meant as a benchmark string (so errors can say what is wrong with it
    instead of treating it as a missing file)."""
    return text.startswith("|") and "~" in text


def parse_arch(text: str) -> Cell:
    """The six (op, input) pairs of a benchmark string, in node order; ``NaspError`` naming the
    fault otherwise."""
    hint = f"expected a NAS-Bench-201 cell string such as {_EXAMPLE}"
    nodes = text.strip().split("+")
    if len(nodes) != NODES:
        raise NaspError(f"cell string {text!r} has {len(nodes)} nodes, expected {NODES}", hint)
    pairs: list[tuple[str, int]] = []
    for node, part in enumerate(nodes, start=1):
        if not (part.startswith("|") and part.endswith("|")) or len(part) < 2:
            raise NaspError(f"node {node} of {text!r} is {part!r}, not |op~j|...|", hint)
        items = part[1:-1].split("|")
        if len(items) != node:
            raise NaspError(f"node {node} of {text!r} has {len(items)} inputs, expected {node}",
                            hint)
        for j, item in enumerate(items):
            op, sep, idx = item.partition("~")
            if not sep or idx != str(j):
                raise NaspError(f"node {node} of {text!r}: {item!r} should read op~{j}", hint)
            if op not in OP_NAMES:
                raise NaspError(f"unknown NAS-Bench-201 op {op!r} in {text!r}",
                                f"use one of: {', '.join(OP_NAMES)}")
            pairs.append((op, j))
    return tuple(pairs)


def format_arch(pairs: Sequence[tuple[str, int]]) -> str:
    """The benchmark string of six (op, input) pairs in node order."""
    pairs = tuple((str(op), int(j)) for op, j in pairs)
    if len(pairs) != NUM_EDGES or tuple(j for _, j in pairs) != edge_inputs():
        raise NaspError(f"{list(pairs)} is not a NAS-Bench-201 cell",
                        "expected six (op, input) pairs with inputs 0 | 0 1 | 0 1 2")
    out, e = [], 0
    for node in range(1, NODES + 1):
        out.append("|" + "|".join(f"{op}~{j}" for op, j in pairs[e:e + node]) + "|")
        e += node
    return "+".join(out)


def all_cells() -> Iterator[Cell]:
    """Every cell of the space (5^6), in lexicographic order of op indices."""
    inputs = edge_inputs()
    for ops in itertools.product(OP_NAMES, repeat=NUM_EDGES):
        yield tuple(zip(ops, inputs))
