"""NAS-Bench-201's cell space (Dong & Yang, ICLR 2020): one cell type, every edge kept.

Node 0 is the cell input; nodes 1..3 each sum one operation applied to every earlier node (six
edges); the cell output is node 3. No edge is ever pruned: a discrete cell picks one op per
edge, and ``none`` is a real choice that removes the edge. The network around the cell (stem,
three stages, residual reductions) is fixed: ``nasp.supernet.nb201`` / ``nasp.models.nb201``.
"""

from nasp.nb201.ops import NB201_OPS
from nasp.nb201.strings import OP_NAMES
from nasp.spaces.base import SPACES, CellSpec, SearchSpace

NB201_CELL = CellSpec(ops=OP_NAMES, nodes=3, inputs=1, keep=None, output=(3,))

SPACES.register(
    "nb201",
    SearchSpace(name="nb201", task="cnn", cells={"cell": NB201_CELL},
                description="NAS-Bench-201: 5 ops, 6 edges all kept, output node 3",
                op_registry=NB201_OPS, family="nb201"),
)
