"""The recurrent search network (DARTS/NASP): embedding, the search cell unrolled over time,
tied decoder.

Search cell, per time step (``m_x``, ``m_h`` variational dropout masks, one per sequence):

* node 0: ``(c, h̃) = [x_t ⊙ m_x, h_{t-1} ⊙ m_h] W_0``, ``s_0 = BN(h_{t-1} + σ(c) ⊙ (tanh(h̃) −
  h_{t-1}))``;
* node i (1..8), edge from predecessor j < i, op k:
  ``(c, h̃) = (s_j ⊙ m_h) W_i``, ``o_{j,k} = s_j + σ(c) ⊙ (f_k(h̃) − s_j)``;
  ``s_i = BN(Σ_{j,k} w[e(i,j), k] · o_{j,k})`` over the (edge, op) pairs the plan executes;
* ``h_t`` = mean of nodes 1..8.

``W_i`` belongs to the node, not to the edge: every candidate predecessor of node i is
transformed by the same matrix (as in DARTS's search cell). This is the weight sharing that
makes the search meaningful: the evaluation cell gives node i one matrix applied to its chosen
predecessor, which is exactly the matrix the search trained for that node. It also makes the
linear transform independent of the op, so it is computed once per (node, predecessor) and
shared by the four activations. ``none`` (DARTS space) contributes zero and is never computed.

The BN is non-affine, one per node (REFERENCE.md), in the search network only. It always
normalises with the statistics of the current batch (the streams at this time step), also in
evaluation: running statistics do not describe the dropout-free evaluation dynamics, and in a
recurrence any per-step gain above 1 compounds - with running statistics the evaluation hidden
state of a briefly trained supernet grew by ~10^4 per window and became NaN. Batch statistics
need two or more streams (the LM task checks ``batch_size`` and ``eval_batch_size``).

The ``CellWeighting`` plan is honoured per (edge, op): RUN with an autograd graph, PROBE under
``no_grad`` (its output only multiplies its weight, so the weight's gradient is ⟨∂L/∂s_i, o⟩
and nothing is back-propagated into the op), SKIP not computed. A predecessor whose ops are
all PROBE is even transformed without a graph. In NASP's weight step each node computes one
linear transform and one activation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from nasp.compiled import compiler_of
from nasp.errors import NaspError
from nasp.rnn_ops import (
    ACTIVATIONS,
    INIT_RANGE,
    dropout_mask,
    embedded_dropout,
    empty_matrix,
    highway,
    locked_dropout,
    make_tied,
)
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.supernet.weighting import PROBE, RUN, SKIP, CellWeighting, Weighting


@dataclass(frozen=True)
class _OpTerm:
    """One activation over some predecessors of a group: which rows, with what weights."""

    act: Callable[[torch.Tensor], torch.Tensor]
    rows: slice | torch.Tensor        # positions within the group's predecessors
    weight: torch.Tensor | None       # (rows, 1, 1) edge weights, or None for unit weight
    probe: bool


@dataclass(frozen=True)
class _Group:
    """Predecessors of a node whose linear transform is computed in one product."""

    preds: tuple[int, ...]
    graph: bool                       # False: every op of these edges is PROBE
    terms: tuple[_OpTerm, ...]


def _rows(positions: list[int], device: torch.device) -> slice | torch.Tensor:
    """A slice when the positions are contiguous (no copy), else an index tensor."""
    if positions == list(range(positions[0], positions[-1] + 1)):
        return slice(positions[0], positions[-1] + 1)
    return torch.tensor(positions, device=device)


def _take(t: torch.Tensor, rows: slice | torch.Tensor) -> torch.Tensor:
    return t[rows] if isinstance(rows, slice) else t.index_select(0, rows)


class SearchRNNCell(nn.Module):
    """The search cell; ``forward(x (T,B,ninp), hidden (B,nhid), weighting)``."""

    def __init__(self, spec: CellSpec, ninp: int, nhid: int, dropouth: float,
                 dropoutx: float) -> None:
        super().__init__()
        if spec.inputs != 1 or spec.keep != 1:
            raise ValueError("a recurrent cell has one input node and one edge per node")
        self.spec = spec
        self.ninp, self.nhid = ninp, nhid
        self.dropouth, self.dropoutx = dropouth, dropoutx
        self.acts = [ACTIVATIONS.get(op) for op in spec.ops]  # None for "none"
        unknown = [op for op in spec.ops if op != "none" and op not in ACTIVATIONS]
        if unknown:
            raise NaspError(f"unknown recurrent op(s) {unknown}",
                            f"use ops from: none, {', '.join(ACTIVATIONS)}")
        self.w0 = empty_matrix(ninp + nhid, 2 * nhid)
        self.ws = nn.ParameterList(empty_matrix(nhid, 2 * nhid) for _ in range(spec.nodes))
        self.reset_parameters()
        # batch statistics in training and evaluation alike (no running statistics): see the
        # module docstring
        self.bns = nn.ModuleList(nn.BatchNorm1d(nhid, affine=False, track_running_stats=False)
                                 for _ in range(spec.nodes + 1))

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w in [self.w0, *self.ws]:
                w.uniform_(-INIT_RANGE, INIT_RANGE)

    def schedule(self, w: CellWeighting) -> list[tuple[_Group, ...]]:
        """Per node, the groups of predecessors to transform and the op terms on them; built
        once per forward from the host-side plan, so the time loop only does arithmetic."""
        device = self.w0.device
        nodes = []
        for i, edges in enumerate(self.spec.node_edges):
            codes = [w.plan[e] for e in edges]  # codes[j][k]: predecessor j, op k
            if all(c == SKIP for row in codes for c in row):
                raise RuntimeError(f"node {i} has no executed incoming edge; invalid weighting")

            def uses(j: int, mode: int, codes: list = codes) -> bool:
                return any(c == mode and self.acts[k] for k, c in enumerate(codes[j]))

            run = [j for j in range(len(edges)) if uses(j, RUN)]
            probe = [j for j in range(len(edges)) if j not in run and uses(j, PROBE)]
            groups = []
            for preds, graph in ((run, True), (probe, False)):
                if not preds:
                    continue
                terms = []
                for k, act in enumerate(self.acts):
                    if act is None:
                        continue
                    for mode in (RUN, PROBE):
                        pos = [p for p, j in enumerate(preds) if codes[j][k] == mode]
                        if not pos:
                            continue
                        weight = None
                        if w.weights is not None:
                            edge_rows = _rows([edges[preds[p]] for p in pos], device)
                            weight = _take(w.weights[:, k], edge_rows).reshape(-1, 1, 1)
                        terms.append(_OpTerm(act, _rows(pos, device), weight,
                                             mode == PROBE))
                groups.append(_Group(tuple(preds), graph, tuple(terms)))
            nodes.append(tuple(groups))
        return nodes

    def _node(self, i: int, groups: tuple[_Group, ...], states: list[torch.Tensor],
              h_mask: torch.Tensor | None) -> torch.Tensor:
        total = None
        grad = torch.is_grad_enabled()
        for g in groups:
            with torch.set_grad_enabled(grad and g.graph):
                if len(g.preds) == 1:  # (P, B, H); a view when there is one predecessor
                    hs = states[g.preds[0]].unsqueeze(0)
                else:
                    hs = torch.stack([states[j] for j in g.preds])
                c, ht = ((hs if h_mask is None else hs * h_mask) @ self.ws[i]).chunk(2, dim=-1)
                c = torch.sigmoid(c)
            for term in g.terms:
                with torch.no_grad() if term.probe else contextlib.nullcontext():
                    prev = _take(hs, term.rows)
                    y = highway(prev, term.act(_take(ht, term.rows)), _take(c, term.rows))
                if term.weight is not None:
                    y = y * term.weight
                y = y.sum(0)
                total = y if total is None else total + y
        if total is None:  # only "none" runs on this node: its value is zero
            total = torch.zeros_like(states[0])
        return self.bns[i + 1](total)

    def node0(self, xw_t: torch.Tensor, h: torch.Tensor, h_mask: torch.Tensor | None,
              w0h: torch.Tensor) -> torch.Tensor:
        """Node 0 at one time step, from ``x_t W_0`` (precomputed) and ``h``."""
        c0, h0 = (xw_t + (h if h_mask is None else h * h_mask) @ w0h).chunk(2, dim=-1)
        return self.bns[0](highway(h, torch.tanh(h0), torch.sigmoid(c0)))

    def forward(self, x: torch.Tensor, hidden: torch.Tensor,
                w: CellWeighting) -> tuple[torch.Tensor, torch.Tensor]:
        plan = self.schedule(w)
        if self.training and self.dropoutx > 0:
            x = x * dropout_mask(x, (1, x.size(1), x.size(2)), self.dropoutx)
        h_mask = None
        if self.training and self.dropouth > 0:
            h_mask = dropout_mask(hidden, tuple(hidden.shape), self.dropouth)
        xw = x @ self.w0[: self.ninp]  # the input part of node 0, all steps at once
        w0h = self.w0[self.ninp:]
        compiler = compiler_of(self) if torch.is_grad_enabled() else None
        outputs = []
        for xw_t in xw.unbind(0):  # unbind: one gradient buffer, not one per step
            if compiler is None:
                states = [self.node0(xw_t, hidden, h_mask, w0h)]
            else:  # node 0 does not depend on the weighting: one graph for every Ā
                states = [compiler.call(_node0, self, xw_t, hidden, h_mask, w0h)]
            for i, groups in enumerate(plan):
                states.append(self._node(i, groups, states, h_mask))
            hidden = torch.stack(states[1:]).mean(0)
            outputs.append(hidden)
        return torch.stack(outputs), hidden


def _node0(cell: SearchRNNCell, *args: torch.Tensor | None) -> torch.Tensor:
    return cell.node0(*args)


class RNNSearchModel(nn.Module):
    """Embedding → search cell → tied decoder. ``forward(tokens (T,B), hidden (B,nhid),
    weighting)`` returns logits (T,B,V) and the last hidden state (B,nhid)."""

    def __init__(self, space: SearchSpace, ntokens: int, emsize: int = 300, nhid: int = 300,
                 dropout: float = 0.75, dropouth: float = 0.25, dropoutx: float = 0.75,
                 dropouti: float = 0.2, dropoute: float = 0.0) -> None:
        super().__init__()
        if "recurrent" not in space.cells:
            raise NaspError(f"space {space.name!r} has no recurrent cell",
                            "use --space rnn or rnn-darts for language models")
        self.ntokens, self.nhid = ntokens, nhid
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        # every module re-initialises itself properly (random search resets the network)
        self.encoder, self.decoder = make_tied(ntokens, emsize, nhid)
        self.cell = SearchRNNCell(space.cells["recurrent"], emsize, nhid, dropouth, dropoutx)

    def init_hidden(self, bsz: int) -> torch.Tensor:
        w = self.encoder.weight
        return torch.zeros(bsz, self.nhid, dtype=w.dtype, device=w.device)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor,
                weighting: Weighting) -> tuple[torch.Tensor, torch.Tensor]:
        emb = embedded_dropout(self.encoder, tokens, self.dropoute, self.training)
        emb = locked_dropout(emb, self.dropouti, self.training)
        out, hidden = self.cell(emb, hidden, weighting["recurrent"])
        out = locked_dropout(out, self.dropout, self.training)
        return self.decoder(out), hidden
