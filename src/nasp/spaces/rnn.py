"""Recurrent cell spaces of DARTS and NASP: 8 nodes, one (predecessor, activation) per node."""

from nasp.spaces.base import SPACES, CellSpec, SearchSpace

RNN_OPS = ("tanh", "relu", "sigmoid", "identity")


def rnn_space(name: str, ops: tuple[str, ...], doc: str) -> SearchSpace:
    return SearchSpace(
        name=name,
        task="lm",
        cells={"recurrent": CellSpec(ops=ops, nodes=8, inputs=1, keep=1)},
        description=doc,
        family="rnn",
    )


SPACES.register("rnn-darts", rnn_space("rnn-darts", ("none",) + RNN_OPS, "DARTS's RNN ops"))
SPACES.register("rnn", rnn_space("rnn", RNN_OPS, "NASP's RNN ops (no none)"))
