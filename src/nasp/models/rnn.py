"""The evaluation language model of a recurrent genotype (DARTS/NASP recurrent cell).

One layer of the found cell between a word embedding and a decoder that shares the embedding
matrix (tied weights, so ``emsize == nhid``). The cell, per time step:

* node 0 from x_t and h_{t-1}: ``(c, h̃) = [x_t ⊙ m_x, h_{t-1} ⊙ m_h] W_0`` and the highway
  ``s_0 = h_{t-1} + σ(c) ⊙ (tanh(h̃) − h_{t-1})``;
* node i (1..8) from its one predecessor ``s_j`` with its own matrix ``W_i``:
  ``(c, h̃) = (s_j ⊙ m_h) W_i``, ``s_i = s_j + σ(c) ⊙ (f_i(h̃) − s_j)`` with the genotype's
  activation ``f_i``;
* ``h_t`` = mean of the nodes in ``concat`` (all eight intermediate nodes).

The masks ``m_x`` (dropoutx) and ``m_h`` (dropouth) are variational: drawn once per sequence,
shared by all time steps. The other regularisers are those of AWD-LSTM that DARTS kept:
embedding dropout (whole words, dropoute), locked dropout on the embeddings (dropouti) and on
the cell output (dropout). No batch normalisation here; the search cell has it (see
``nasp.supernet.rnn``). The building blocks are shared with the search network
(``nasp.rnn_ops``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nasp.compiled import compiler_of
from nasp.errors import NaspError
from nasp.genotype import Genotype
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


def perplexity(loss: float) -> float:
    """exp(loss), capped so that a diverged model reports a huge but finite number."""
    return math.exp(min(loss, 50.0))


class RecurrentCell(nn.Module):
    """The cell of a recurrent genotype; ``forward(x (T,B,ninp), h (B,nhid))``."""

    def __init__(self, genotype: Genotype, ninp: int, nhid: int, dropouth: float,
                 dropoutx: float) -> None:
        super().__init__()
        if genotype.task != "lm":
            raise NaspError("a language model needs a recurrent genotype, got a CNN one",
                            "pass a genotype with a 'recurrent' cell (e.g. DARTS_V2)")
        pairs = list(genotype.cells["recurrent"])
        for op, _ in pairs:
            if op != "none" and op not in ACTIVATIONS:
                raise NaspError(f"unknown recurrent op {op!r}",
                                f"use one of: none, {', '.join(ACTIVATIONS)}")
        self.nhid, self.ninp = nhid, ninp
        self.dropouth, self.dropoutx = dropouth, dropoutx
        self.acts = [op for op, _ in pairs]
        self.preds = [j for _, j in pairs]
        self.concat = list(genotype.concat["recurrent"])
        self.w0 = empty_matrix(ninp + nhid, 2 * nhid)
        # a "none" node (possible in searches of the rnn-darts space that keep it, e.g. NASP,
        # PA) is zero, as in the search cell: it has no matrix
        self.ws = nn.ParameterList(empty_matrix(nhid, 2 * nhid) if op != "none"
                                   else empty_matrix(nhid, 0) for op, _ in pairs)
        self.reset_parameters()
        # consumers[j]: the nodes reading state j; their matrices are applied in one product
        self.consumers = [[i for i, p in enumerate(self.preds) if p == j and pairs[i][0] != "none"]
                          for j in range(len(pairs) + 1)]

    def reset_parameters(self) -> None:
        with torch.no_grad():
            for w in [self.w0, *self.ws]:
                w.uniform_(-INIT_RANGE, INIT_RANGE)

    def forward(self, x: torch.Tensor, hidden: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.training and self.dropoutx > 0:
            x = x * dropout_mask(x, (1, x.size(1), x.size(2)), self.dropoutx)
        h_mask = None
        if self.training and self.dropouth > 0:
            h_mask = dropout_mask(hidden, tuple(hidden.shape), self.dropouth)
        xw = x @ self.w0[: self.ninp]  # the input part of node 0, all steps at once
        w0h = self.w0[self.ninp:]
        # one matrix per state: its consumers' matrices side by side
        wcat = [torch.cat([self.ws[i] for i in c], dim=1) if c else None for c in self.consumers]
        compiler = compiler_of(self)
        outputs = []
        for xw_t in xw.unbind(0):  # unbind: one gradient buffer, not one per step
            if compiler is None:
                hidden = self.step(xw_t, hidden, h_mask, w0h, wcat)
            else:  # one graph per batch shape and mode, whatever the window length
                hidden = compiler.call(_cell_step, self, xw_t, hidden, h_mask, w0h, wcat)
            outputs.append(hidden)
        return torch.stack(outputs), hidden

    def step(self, xw_t: torch.Tensor, h: torch.Tensor, h_mask: torch.Tensor | None,
             w0h: torch.Tensor, wcat: list[torch.Tensor | None]) -> torch.Tensor:
        """One time step: node 0 from ``x_t W_0`` (precomputed) and ``h``, the nodes, their
        mean (the new hidden state)."""
        nhid = self.nhid
        c0, h0 = (xw_t + (h if h_mask is None else h * h_mask) @ w0h).chunk(2, dim=-1)
        states = [highway(h, torch.tanh(h0), torch.sigmoid(c0))]
        pre: dict[int, torch.Tensor] = {}
        for j in range(len(self.acts) + 1):
            if j > 0 and self.acts[j - 1] == "none":
                states.append(torch.zeros_like(states[0]))
            elif j > 0:  # node j from its predecessor's transform
                i = j - 1
                c, ht = pre.pop(i).chunk(2, dim=-1)
                prev = states[self.preds[i]]
                states.append(highway(prev, ACTIVATIONS[self.acts[i]](ht), torch.sigmoid(c)))
            if wcat[j] is not None:
                s = states[j] if h_mask is None else states[j] * h_mask
                for i, chunk in zip(self.consumers[j], (s @ wcat[j]).split(2 * nhid, -1)):
                    pre[i] = chunk
        return torch.stack([states[n] for n in self.concat]).mean(0)


def _cell_step(cell: RecurrentCell, *args: Any) -> torch.Tensor:
    return cell.step(*args)


class RNNModel(nn.Module):
    """Embedding → recurrent cell → tied decoder. ``forward(tokens (T,B), hidden (B,nhid))``
    returns logits (T,B,V), the last hidden state, and the cell outputs before output dropout
    (for temporal activation regularisation)."""

    def __init__(self, genotype: Genotype, ntokens: int, emsize: int = 850, nhid: int = 850,
                 dropout: float = 0.75, dropouth: float = 0.25, dropoutx: float = 0.75,
                 dropouti: float = 0.2, dropoute: float = 0.1) -> None:
        super().__init__()
        self.ntokens, self.nhid = ntokens, nhid
        self.dropout, self.dropouti, self.dropoute = dropout, dropouti, dropoute
        self.encoder, self.decoder = make_tied(ntokens, emsize, nhid)
        self.cell = RecurrentCell(genotype, emsize, nhid, dropouth, dropoutx)

    def init_hidden(self, bsz: int) -> torch.Tensor:
        w = self.encoder.weight
        return torch.zeros(bsz, self.nhid, dtype=w.dtype, device=w.device)

    def forward(self, tokens: torch.Tensor, hidden: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        emb = embedded_dropout(self.encoder, tokens, self.dropoute, self.training)
        emb = locked_dropout(emb, self.dropouti, self.training)
        raw, hidden = self.cell(emb, hidden)
        out = locked_dropout(raw, self.dropout, self.training)
        return self.decoder(out), hidden, raw


def build_lm(genotype: Genotype, ntokens: int, **sizes_and_dropouts: float) -> RNNModel:
    """The evaluation model of ``genotype`` (keyword arguments as ``RNNModel``)."""
    return RNNModel(genotype, ntokens, **sizes_and_dropouts)  # type: ignore[arg-type]


def count_lm_params(genotype: Genotype, ntokens: int = 10000, emsize: int = 850,
                    nhid: int = 850) -> int:
    """Parameters of the evaluation model (tied embedding counted once). Built on the meta
    device, so nothing is allocated. DARTS_V2 on PTB: 22,960,000 (the paper's "23M")."""
    with torch.device("meta"):
        model = RNNModel(genotype, ntokens, emsize, nhid)
    return sum(p.numel() for p in model.parameters())
