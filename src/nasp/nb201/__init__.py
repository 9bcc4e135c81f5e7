"""NAS-Bench-201: cell strings, the benchmark's ground truth, and the official archive reader.

``nasp.nb201.strings`` converts cell strings; ``nasp.nb201.table`` scores any cell with the
shipped 200-epoch test accuracies (``lookup``, ``best``); ``nasp.nb201.archive`` reads a user's
NATS-Bench topology archive for validation and 12-epoch figures; ``nasp.nb201.ops`` holds the
benchmark's operations and ``nasp.nb201.network`` the fixed network around its cells. The space
itself is ``nasp.spaces.nb201``, its networks ``nasp.supernet.nb201`` and ``nasp.models.nb201``.
"""

from nasp.nb201.strings import OP_NAMES, format_arch, parse_arch
from nasp.nb201.table import best, index_of, lookup

__all__ = ["OP_NAMES", "best", "format_arch", "index_of", "lookup", "parse_arch"]
