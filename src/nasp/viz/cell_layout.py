"""A layered left-to-right layout of one cell: cell inputs, intermediate nodes, output.

Cells are tiny DAGs (at most a dozen nodes), so the layout is a plain Sugiyama scheme done
exhaustively enough to be good every time, without a system program:

1. layers: a node sits one layer right of its deepest input; the output one right of the last;
2. every edge label is a vertex of its own, in the column just before the edge's target, and
   an edge that spans several columns gets a (small, invisible) vertex in each: labels then take
   space like nodes do, so they can never overlap one another, a node or another edge;
3. order within each column: barycenter sweeps, then swaps of neighbours while they remove
   crossings, keeping the best order seen (ties keep the genotype's node order);
4. vertical positions: each vertex pulled towards its neighbours (long edges pulled straight
   harder) while keeping the order and the minimum gaps, an exact weighted isotonic regression
   per column; column gaps widen with the slope of the edges that bend in them.

Sizes are in inches and text is measured with matplotlib's own font metrics, so a label's box
is the box its text is drawn in. Nothing here draws: :mod:`nasp.viz.cell_figure` does.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

# box and gap sizes, inches
NODE_HEIGHT = 0.34
LABEL_PAD_X, LABEL_PAD_Y = 0.10, 0.08
NODE_PAD_X = 0.22
GAP = {"label": 0.10, "node": 0.16, "dummy": 0.07}
PORT_SPACING = 0.075


@dataclass(frozen=True)
class CellGraph:
    """A cell as drawn: labelled input states, intermediate nodes with their incoming edges,
    and the states the output combines.

    State ``s`` is input ``s`` for ``s < len(inputs)``, else node ``s - len(inputs)``. An edge is
    ``(op, state)``; ``op=None`` draws a plain connection without a label (the recurrent cell's
    x_t, h_{t-1} -> node 0). Any cell given as per-node lists of (op, input) can be drawn.
    """

    title: str
    inputs: tuple[str, ...]
    nodes: tuple[tuple[str, tuple[tuple[str | None, int], ...]], ...]
    output: tuple[int, ...]
    output_label: str = "output"

    @property
    def num_states(self) -> int:
        return len(self.inputs) + len(self.nodes)

    def state_label(self, s: int) -> str:
        return self.inputs[s] if s < len(self.inputs) else self.nodes[s - len(self.inputs)][0]


@dataclass
class Vertex:
    kind: str  # "input", "node", "output" (boxes), "label" (an edge's op), "dummy"
    text: str
    rank: int
    width: float
    height: float
    op: str | None = None
    x: float = 0.0  # centre
    y: float = 0.0  # centre; y grows downwards


@dataclass
class DrawnEdge:
    """One edge of the cell: its op (None: unlabelled) and the vertices it runs through."""

    op: str | None
    chain: list[int]
    points: list[tuple[float, float]] = field(default_factory=list)


@dataclass
class CellLayout:
    graph: CellGraph
    vertices: list[Vertex]
    edges: list[DrawnEdge]
    order: list[list[int]]
    width: float
    height: float
    crossings: int


TextSize = Callable[[str, str], tuple[float, float]]


def _layers(graph: CellGraph) -> list[int]:
    n_in = len(graph.inputs)
    layer = [0] * n_in
    for _, edges in graph.nodes:
        layer.append(1 + max((layer[s] for _, s in edges), default=0))
    return layer


def _build(graph: CellGraph, text_size: TextSize) -> tuple[list[Vertex], list[DrawnEdge]]:
    vertices: list[Vertex] = []
    layer = _layers(graph)

    degree = [0] * (graph.num_states + 1)  # the most edges on one side of a box
    for i, (_, incoming) in enumerate(graph.nodes):
        degree[len(graph.inputs) + i] = len(incoming)
    degree[-1] = len(graph.output)
    for _, incoming in graph.nodes:
        for _, s in incoming:
            degree[s] = max(degree[s], sum(1 for _, e in graph.nodes for _, t in e if t == s))

    def box(kind: str, text: str, rank: int, state: int) -> int:
        w, _ = text_size(text, "node")
        h = max(NODE_HEIGHT, PORT_SPACING * 0.8 * degree[state] + 0.1)
        vertices.append(Vertex(kind, text, rank, w + 2 * NODE_PAD_X, h))
        return len(vertices) - 1

    def chain(src: int, dst: int, op: str | None) -> DrawnEdge:
        ids = [src]
        top = vertices[dst].rank
        for rank in range(vertices[src].rank + 1, top):
            if op is not None and rank == top - 1:
                w, h = text_size(op, "label")
                vertices.append(Vertex("label", op, rank, w + 2 * LABEL_PAD_X,
                                       h + 2 * LABEL_PAD_Y, op))
            else:
                vertices.append(Vertex("dummy", "", rank, 0.0, 0.02, op))
            ids.append(len(vertices) - 1)
        return DrawnEdge(op, ids + [dst])

    n_in = len(graph.inputs)
    state_ids = [box("input", t, 0, s) for s, t in enumerate(graph.inputs)]
    state_ids += [box("node", label, 2 * layer[n_in + i], n_in + i) for i, (label, _) in
                  enumerate(graph.nodes)]
    out_rank = 2 * (1 + max(layer[s] for s in graph.output))
    out_id = box("output", graph.output_label, out_rank, -1)
    edges = []
    for i, (_, incoming) in enumerate(graph.nodes):
        for op, s in incoming:
            edges.append(chain(state_ids[s], state_ids[n_in + i], op))
    for s in graph.output:
        edges.append(chain(state_ids[s], out_id, None))
    return vertices, edges


def _links(edges: Sequence[DrawnEdge]) -> list[tuple[int, int, float]]:
    """(upper-rank vertex, lower-rank vertex, weight) for every segment between two columns.

    Segments between two invisible vertices weigh most, so long edges run straight."""
    out = []
    for e in edges:
        for k, (a, b) in enumerate(zip(e.chain, e.chain[1:])):
            inner = 0 < k < len(e.chain) - 2
            out.append((a, b, 40.0 if inner else 1.0))
    return out


def _crossings(order: list[list[int]], links: list[tuple[int, int, float]],
               vertices: list[Vertex]) -> int:
    pos = {v: i for col in order for i, v in enumerate(col)}
    by_rank: dict[int, list[tuple[int, int]]] = {}
    for a, b, _ in links:
        by_rank.setdefault(vertices[a].rank, []).append((pos[a], pos[b]))
    total = 0
    for segs in by_rank.values():
        for i in range(len(segs)):
            for j in range(i + 1, len(segs)):
                (a1, b1), (a2, b2) = segs[i], segs[j]
                if (a1 - a2) * (b1 - b2) < 0:
                    total += 1
    return total


def _column_costs(col: list[int], up: dict[int, list[int]], down: dict[int, list[int]],
                  pos: dict[int, int]) -> list[list[int]]:
    """``c[i][j]``: crossings between the edges of ``col[i]`` and ``col[j]`` (with both
    neighbouring columns) when ``col[i]`` is placed above ``col[j]``."""
    n = len(col)
    c = [[0] * n for _ in range(n)]
    for i, u in enumerate(col):
        for j, v in enumerate(col):
            if i != j:
                c[i][j] = sum(1 for side in (up, down) for a in side.get(u, ())
                              for b in side.get(v, ()) if pos[a] > pos[b])
    return c


def _best_column(col: list[int], costs: list[list[int]]) -> list[int]:
    """The order of ``col`` with fewest crossings, exactly (dynamic programming over the
    subsets already placed); ties keep the current order. Columns hold a dozen vertices at
    most, so 2^n states are few."""
    n = len(col)
    if n > 14:
        return col
    # ties: a tiny cost for each pair placed against the current order
    w = [[costs[i][j] * (n * n + 1) + (1 if i > j else 0) for j in range(n)] for i in range(n)]
    full = (1 << n) - 1
    best = [0] * (1 << n)
    last = [0] * (1 << n)
    for s in range(1, full + 1):
        val = None
        for v in range(n):
            if s >> v & 1:
                rest = s & ~(1 << v)
                add = best[rest] + sum(w[u][v] for u in range(n) if rest >> u & 1)
                if val is None or add < val:
                    val, last[s] = add, v
        best[s] = val  # type: ignore[assignment]
    out, s = [], full
    while s:
        out.append(col[last[s]])
        s &= ~(1 << last[s])
    return out[::-1]


def _heuristic_order(order: list[list[int]], links: list[tuple[int, int, float]],
                     vertices: list[Vertex]) -> list[list[int]]:
    """Barycenter sweeps, then each column reordered exactly given its neighbours."""
    ranks = len(order)
    up: dict[int, list[int]] = {}
    down: dict[int, list[int]] = {}
    for a, b, _ in links:
        down.setdefault(a, []).append(b)
        up.setdefault(b, []).append(a)

    def barycenter(r: int, neighbours: dict[int, list[int]]) -> None:
        pos = {v: i for col in order for i, v in enumerate(col)}

        def key(v: int) -> float:
            ns = neighbours.get(v)
            return sum(pos[n] for n in ns) / len(ns) if ns else float(pos[v])

        order[r] = sorted(order[r], key=key)

    best, best_c = [list(c) for c in order], _crossings(order, links, vertices)
    for it in range(12):
        rng = range(1, ranks) if it % 2 == 0 else range(ranks - 2, 0, -1)
        for r in rng:
            barycenter(r, up if it % 2 == 0 else down)
        c = _crossings(order, links, vertices)
        if c < best_c:
            best, best_c = [list(col) for col in order], c
    order = best
    for _ in range(2 * ranks):
        changed = False
        for r in [*range(1, ranks), *range(ranks - 2, 0, -1)]:
            pos = {v: i for col in order for i, v in enumerate(col)}
            new = _best_column(order[r], _column_costs(order[r], up, down, pos))
            if new != order[r]:
                order[r], changed = new, True
        if not changed:
            break
    return order


def _exact_order(ref: list[list[int]], links: list[tuple[int, int, float]],
                 vertices: list[Vertex]) -> list[list[int]] | None:
    """The order with fewest crossings over all columns at once, or None where the columns
    are too long to try every order (then the heuristic's stands).

    Crossings only arise between neighbouring columns, so a dynamic programme over columns,
    with every permutation of a column as a state, is exact; among equal orders it keeps the
    one closest to ``ref`` (fewest pairs swapped), and the cell inputs keep their conventional
    order unless swapping them removes a crossing. Cells give columns of at most 8 or so.
    """
    sizes = [len(c) for c in ref]
    counts = [math.factorial(n) for n in sizes]
    if max(counts) > 40320 or any(a * b > 4_000_000 for a, b in zip(counts, counts[1:])):
        return None
    index = {v: (r, i) for r, col in enumerate(ref) for i, v in enumerate(col)}
    perms, positions, inversions = [], [], []
    for n in sizes:
        p = np.array(list(itertools.permutations(range(n))), dtype=np.int64)
        pos = np.argsort(p, axis=1)  # pos[k, i]: where ref vertex i goes in permutation k
        perms.append(p)
        positions.append(pos)
        inv = np.zeros(len(p), dtype=np.int64)
        for i in range(n):
            for j in range(i + 1, n):
                inv += pos[:, i] > pos[:, j]
        inversions.append(inv)
    by_gap: dict[int, list[tuple[int, int]]] = {}
    for a, b, _ in links:
        (r, i), (_, k) = index[a], index[b]
        by_gap.setdefault(r, []).append((i, k))
    big = 1 + max(sizes) ** 2
    best = inversions[0] * big  # the inputs swap only where that removes a crossing
    back = []
    for r in range(len(ref) - 1):
        segs = by_gap.get(r, [])
        pairs = [(s, t) for s in range(len(segs)) for t in range(s + 1, len(segs))
                 if segs[s][0] != segs[t][0] and segs[s][1] != segs[t][1]]
        if pairs:
            up_sign = np.stack([np.sign(positions[r][:, segs[s][0]] - positions[r][:, segs[t][0]])
                                for s, t in pairs], axis=1)
            lo_sign = np.stack([np.sign(positions[r + 1][:, segs[s][1]]
                                        - positions[r + 1][:, segs[t][1]]) for s, t in pairs],
                               axis=1)
            cross = (len(pairs) - up_sign @ lo_sign.T) // 2
        else:
            cross = np.zeros((len(perms[r]), len(perms[r + 1])), dtype=np.int64)
        total = best[:, None] + cross * big + inversions[r + 1][None, :]
        back.append(np.argmin(total, axis=0))
        best = total[back[-1], np.arange(total.shape[1])]
    k = int(np.argmin(best))
    chosen = [0] * len(ref)
    for r in range(len(ref) - 1, -1, -1):
        chosen[r] = k
        if r:
            k = int(back[r - 1][k])
    return [[ref[r][i] for i in perms[r][chosen[r]]] for r in range(len(ref))]


def _order(vertices: list[Vertex], links: list[tuple[int, int, float]]) -> list[list[int]]:
    ranks = 1 + max(v.rank for v in vertices)
    order: list[list[int]] = [[] for _ in range(ranks)]
    for i, v in enumerate(vertices):
        order[v.rank].append(i)
    order = _heuristic_order(order, links, vertices)
    exact = _exact_order(order, links, vertices)
    return exact if exact is not None else order


def _isotonic(desired: list[float], weights: list[float], seps: list[float]) -> list[float]:
    """argmin sum w_i (y_i - d_i)^2 subject to y_{i+1} - y_i >= seps[i] (pool adjacent
    violators on y shifted by the cumulative separations)."""
    offset = [0.0]
    for s in seps:
        offset.append(offset[-1] + s)
    blocks: list[list[float]] = []  # [weighted mean, weight, count]
    for d, w, o in zip(desired, weights, offset):
        blocks.append([d - o, w, 1])
        while len(blocks) > 1 and blocks[-2][0] > blocks[-1][0]:
            m2, w2, n2 = blocks.pop()
            m1, w1, n1 = blocks.pop()
            blocks.append([(m1 * w1 + m2 * w2) / (w1 + w2), w1 + w2, n1 + n2])
    z = [m for m, _, n in blocks for _ in range(int(n))]
    return [zi + o for zi, o in zip(z, offset)]


def _gap(a: Vertex, b: Vertex) -> float:
    kinds = {a.kind, b.kind}
    if "label" in kinds:
        g = GAP["label"]
    elif kinds <= {"dummy"}:
        g = GAP["dummy"]
    else:
        g = GAP["node"] if kinds & {"input", "node", "output"} else GAP["dummy"]
    return (a.height + b.height) / 2 + g


def _place_y(vertices: list[Vertex], order: list[list[int]],
             links: list[tuple[int, int, float]]) -> None:
    nbrs: dict[int, list[tuple[int, float]]] = {}
    for a, b, w in links:
        nbrs.setdefault(a, []).append((b, w))
        nbrs.setdefault(b, []).append((a, w))
    for col in order:  # start stacked, centred
        y = 0.0
        for k, v in enumerate(col):
            if k:
                y += _gap(vertices[col[k - 1]], vertices[v])
            vertices[v].y = y
        shift = y / 2
        for v in col:
            vertices[v].y -= shift
    ranks = list(range(len(order)))
    for it in range(60):
        moved = 0.0
        for r in (ranks if it % 2 == 0 else ranks[::-1]):
            col = order[r]
            desired, weights = [], []
            for v in col:
                ns = nbrs.get(v, [])
                wsum = sum(w for _, w in ns)
                if wsum:
                    desired.append(sum(vertices[n].y * w for n, w in ns) / wsum)
                    weights.append(wsum)
                else:
                    desired.append(vertices[v].y)
                    weights.append(1.0)
            seps = [_gap(vertices[a], vertices[b]) for a, b in zip(col, col[1:])]
            for v, y in zip(col, _isotonic(desired, weights, seps)):
                moved = max(moved, abs(vertices[v].y - y))
                vertices[v].y = y
        if moved < 1e-4:  # inches: converged
            break
    top = min(v.y - v.height / 2 for v in vertices)
    for v in vertices:
        v.y -= top


def _ports(vertices: list[Vertex], edges: list[DrawnEdge]) -> dict[tuple[int, int], float]:
    """Where each edge leaves its source box and enters its target box (a y offset), spread
    along the box side in the order of the other ends, so edges do not cross at a box."""
    ends: dict[tuple[int, str], list[tuple[float, int]]] = {}
    for k, e in enumerate(edges):
        ends.setdefault((e.chain[0], "out"), []).append((vertices[e.chain[1]].y, k))
        ends.setdefault((e.chain[-1], "in"), []).append((vertices[e.chain[-2]].y, k))
    offsets: dict[tuple[int, int], float] = {}
    for (v, side), items in ends.items():
        items.sort()
        n = len(items)
        step = min(PORT_SPACING, 0.8 * vertices[v].height / max(n, 1))
        for i, (_, k) in enumerate(items):
            offsets[(k, 0 if side == "out" else 1)] = (i - (n - 1) / 2) * step
    return offsets


def layout_cell(graph: CellGraph, text_size: TextSize) -> CellLayout:
    """Positions (inches) of every box, label and edge of ``graph``.

    ``text_size(text, role)`` gives the (width, height) in inches of ``text`` drawn as a box
    label (role "node") or an edge label (role "label").
    """
    vertices, edges = _build(graph, text_size)
    links = _links(edges)
    order = _order(vertices, links)
    _place_y(vertices, order, links)
    # columns: as wide as their widest vertex; gaps as wide as the steepest bend in them needs
    ranks = len(order)
    widths = [max((vertices[v].width for v in col), default=0.0) for col in order]
    rise = [0.0] * ranks
    for a, b, _ in links:
        r = vertices[a].rank
        rise[r] = max(rise[r], abs(vertices[a].y - vertices[b].y))
    left, x = [], 0.0
    for r in range(ranks):
        left.append(x)
        x += widths[r] + (min(0.85, max(0.28, 0.22 + 0.2 * rise[r])) if r < ranks - 1 else 0)
    for v in vertices:
        v.x = left[v.rank] + widths[v.rank] / 2
    ports = _ports(vertices, edges)
    for k, e in enumerate(edges):
        src, dst = vertices[e.chain[0]], vertices[e.chain[-1]]
        pts = [(src.x + src.width / 2, src.y + ports[(k, 0)])]
        for v in e.chain[1:-1]:
            vert = vertices[v]
            pts += [(left[vert.rank], vert.y), (left[vert.rank] + widths[vert.rank], vert.y)]
        pts.append((dst.x - dst.width / 2, dst.y + ports[(k, 1)]))
        e.points = pts
    height = max(v.y + v.height / 2 for v in vertices)
    return CellLayout(graph, vertices, edges, order, x, height,
                      _crossings(order, links, vertices))
