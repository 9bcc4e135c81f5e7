"""Reading pickles that hold plain data only.

Pickle can run arbitrary code, and the datasets and benchmark archives nasp reads are pickles
downloaded from elsewhere. Every one of them is read with an unpickler that resolves only the
few names its format needs (NumPy's array reconstruction, and for benchmark archives
``OrderedDict`` and NumPy scalars); anything else fails with ``UnpicklingError``, so a tampered
file cannot run code.
"""

from __future__ import annotations

import pickle
from collections.abc import Collection
from typing import IO, Any

import numpy as np

# what a pickled ndarray needs (NumPy 1 and 2 module paths; _codecs for protocol-2 bytes)
NUMPY_ARRAYS = frozenset({
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode"),
})
# plus NumPy scalars (np.float64 values) and ordered dicts: the NATS-Bench archives
PLAIN_RECORDS = NUMPY_ARRAYS | {
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("collections", "OrderedDict"),
}


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: IO[bytes], allowed: Collection[tuple[str, str]],
                 encoding: str = "bytes") -> None:
        super().__init__(file, encoding=encoding)
        self.allowed = allowed

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in self.allowed:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        if module.startswith("numpy.core.") and hasattr(np, "_core"):
            module = "numpy._core." + module.removeprefix("numpy.core.")  # no NumPy 2 warning
        return super().find_class(module, name)


def restricted_load(file: IO[bytes], allowed: Collection[tuple[str, str]] = NUMPY_ARRAYS,
                    encoding: str = "bytes") -> Any:
    """``pickle.load`` that resolves only the ``allowed`` (module, name) globals."""
    return RestrictedUnpickler(file, allowed, encoding).load()
