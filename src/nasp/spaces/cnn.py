"""CNN cell spaces of DARTS and NASP (REFERENCE.md, "Search spaces")."""

from nasp.ops import OPS
from nasp.spaces.base import SPACES, CellSpec, SearchSpace

DARTS_OPS = (
    "none", "max_pool_3x3", "avg_pool_3x3", "skip_connect",
    "sep_conv_3x3", "sep_conv_5x5", "dil_conv_3x3", "dil_conv_5x5",
)
NASP7_OPS = DARTS_OPS[1:]
NASP12_NORMAL = (
    "skip_connect", "conv_1x3_3x1", "dil_conv_3x3", "conv_1x1",
    "conv_3x3", "sep_conv_3x3", "sep_conv_5x5", "sep_conv_7x7",
)
NASP12_REDUCE = ("skip_connect", "avg_pool_3x3", "max_pool_3x3", "max_pool_5x5", "max_pool_7x7")


def cnn_space(name: str, normal: tuple[str, ...], reduce: tuple[str, ...], doc: str) -> SearchSpace:
    """A CNN space with DARTS's cell shape (2 inputs, 4 nodes, 2 kept edges per node)."""
    return SearchSpace(
        name=name,
        task="cnn",
        cells={
            "normal": CellSpec(ops=normal, nodes=4, inputs=2, keep=2),
            "reduce": CellSpec(ops=reduce, nodes=4, inputs=2, keep=2, reduction=True),
        },
        description=doc,
        op_registry=OPS,
    )


SPACES.register("darts", cnn_space("darts", DARTS_OPS, DARTS_OPS, "DARTS's 8 ops incl. none"))
SPACES.register("nasp-7", cnn_space("nasp-7", NASP7_OPS, NASP7_OPS, "DARTS's ops without none"))
SPACES.register(
    "nasp-12",
    cnn_space("nasp-12", NASP12_NORMAL, NASP12_REDUCE, "NASP's 12 ops, split by cell type"),
)
