"""The building blocks of recurrent cells and language models, shared by the search network
(``nasp.supernet.rnn``) and the evaluation network (``nasp.models.rnn``): the cells' candidate
activations, the highway update, variational and embedding dropout, and the tied embedding and
decoder. They sit beside ``nasp.ops``, below both networks, so neither imports the other.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from nasp.errors import NaspError

# The candidate activations of recurrent cells; "none" (the DARTS space's zero op) has none.
ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "tanh": torch.tanh,
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "identity": lambda x: x,
}
INIT_RANGE = 0.04  # uniform init of the cell matrices (DARTS's release)
EMBED_INIT = 0.1   # uniform init of the embedding (AWD-LSTM)



def dropout_mask(like: torch.Tensor, shape: tuple[int, ...], p: float) -> torch.Tensor:
    """A Bernoulli(1-p) keep-mask scaled by 1/(1-p), dtype and device of ``like``."""
    return like.new_empty(shape).bernoulli_(1 - p).div_(1 - p)


def locked_dropout(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Variational dropout on a (T, B, H) sequence: one mask per sequence, not per step."""
    if not training or p == 0:
        return x
    return x * dropout_mask(x, (1, x.size(1), x.size(2)), p)


def embedded_dropout(embed: nn.Embedding, tokens: torch.Tensor, p: float,
                     training: bool) -> torch.Tensor:
    """Drop whole words: zero rows of the embedding matrix for this batch (AWD-LSTM)."""
    if not training or p == 0:
        return embed(tokens)
    weight = embed.weight * dropout_mask(embed.weight, (embed.weight.size(0), 1), p)
    return F.embedding(tokens, weight)


def highway(prev: torch.Tensor, candidate: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
    """``prev + gate ⊙ (candidate − prev)`` in one kernel (``torch.lerp``)."""
    return torch.lerp(prev, candidate, gate)


def empty_matrix(rows: int, cols: int) -> nn.Parameter:
    """A cell matrix; the cell's ``reset_parameters`` fills it U(-0.04, 0.04)."""
    return nn.Parameter(torch.empty(rows, cols))


class WordEmbedding(nn.Embedding):
    """An embedding initialised U(-0.1, 0.1) (AWD-LSTM), also when re-initialised."""

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.weight.uniform_(-EMBED_INIT, EMBED_INIT)


class TiedDecoder(nn.Linear):
    """The output layer; its weight is the embedding matrix (set by the model), so
    re-initialising it only zeroes the bias (the embedding re-initialises the shared matrix)."""

    def reset_parameters(self) -> None:
        with torch.no_grad():
            self.bias.zero_()


def make_tied(ntokens: int, emsize: int, nhid: int) -> tuple[WordEmbedding, TiedDecoder]:
    """Embedding and decoder sharing one matrix (which needs ``emsize == nhid``)."""
    if emsize != nhid:
        raise NaspError(f"emsize ({emsize}) must equal nhid ({nhid})",
                        "the decoder shares the embedding matrix; set both to one size")
    encoder = WordEmbedding(ntokens, emsize)
    decoder = TiedDecoder(nhid, ntokens)
    decoder.weight = encoder.weight
    return encoder, decoder
