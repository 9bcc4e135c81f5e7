"""Search spaces: data, not code. A space names the candidate ops of each cell type and the
shape of the cell DAG; supernets and strategies read everything they need from it."""

from nasp.spaces import cnn as _cnn  # noqa: F401  (registers the CNN spaces)
from nasp.spaces import nb201 as _nb201  # noqa: F401  (registers NAS-Bench-201)
from nasp.spaces import rnn as _rnn  # noqa: F401  (registers the recurrent spaces)
from nasp.spaces.base import SPACES, CellSpec, SearchSpace, get_space

__all__ = ["CellSpec", "SearchSpace", "SPACES", "get_space"]
