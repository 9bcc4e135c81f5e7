"""CIFAR-10 and CIFAR-100 from their "python version" archives (pickled batches).

Pickle can run arbitrary code, so batches are read with an unpickler that only resolves the
handful of NumPy names a CIFAR batch needs (``nasp.data.pickles``); a tampered file fails with
a NaspError instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nasp.data.dataset import IMAGE_DATASETS, ImageDataset, make_dataset, require_root
from nasp.data.pickles import restricted_load
from nasp.errors import NaspError


def _load_pickle(path: Path, keys: tuple[bytes, ...]) -> dict[bytes, Any]:
    if not path.is_file():
        raise NaspError(f"{path} not found", "expected the CIFAR python-version file there")
    try:
        with open(path, "rb") as f:
            obj = restricted_load(f)
    except Exception as e:  # pickle raises many types on damaged input
        raise NaspError(f"cannot read {path}: {type(e).__name__}: {e}",
                        "expected a CIFAR python-version pickle; download it again") from None
    if not isinstance(obj, dict):
        raise NaspError(f"{path} holds a {type(obj).__name__}, not a dict",
                        "expected a CIFAR python-version pickle")
    obj = {k.encode() if isinstance(k, str) else k: v for k, v in obj.items()}
    missing = [k.decode() for k in keys if k not in obj]
    if missing:
        raise NaspError(f"{path} has no key(s) {', '.join(missing)}",
                        f"expected a CIFAR pickle with keys {', '.join(k.decode() for k in keys)}")
    return obj


def _read_batches(paths: list[Path], label_key: bytes, num_classes: int) -> tuple[np.ndarray,
                                                                                 np.ndarray]:
    xs, ys = [], []
    for path in paths:
        batch = _load_pickle(path, (b"data", label_key))
        x = np.asarray(batch[b"data"])
        y = np.asarray(batch[label_key])
        if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * 32 * 32:
            raise NaspError(f"{path}: data is {x.dtype} {x.shape}",
                            "expected uint8 rows of 3072 values (3x32x32, channel-major)")
        if y.ndim != 1 or len(y) != len(x):
            raise NaspError(f"{path}: {label_key.decode()} has {y.size} entries for "
                            f"{len(x)} images", "expected one label per image")
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise NaspError(f"{path}: label {int(y.max())} is out of range",
                            f"expected labels 0..{num_classes - 1}")
        xs.append(x.reshape(-1, 3, 32, 32))
        ys.append(y.astype(np.int64))
    return np.concatenate(xs), np.concatenate(ys)


def _class_names(path: Path, key: bytes, expected: int) -> list[str]:
    names = _load_pickle(path, (key,))[key]
    names = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    if len(names) != expected:
        raise NaspError(f"{path}: {key.decode()} has {len(names)} names",
                        f"expected {expected} class names")
    return names


def _folder(root: Path | None, name: str, subdir: str, marker: str) -> Path:
    path = require_root(name, root, f"the {subdir} folder")
    if (path / subdir / marker).exists() and not (path / marker).exists():
        return path / subdir  # the parent of the extracted archive was given
    return path


@IMAGE_DATASETS.register("cifar10")
def load_cifar10(root: Path | None) -> ImageDataset:
    """CIFAR-10 from ``cifar-10-batches-py`` (data_batch_1..5, test_batch, batches.meta)."""
    path = _folder(root, "cifar10", "cifar-10-batches-py", "batches.meta")
    classes = _class_names(path / "batches.meta", b"label_names", 10)
    train_x, train_y = _read_batches([path / f"data_batch_{i}" for i in range(1, 6)], b"labels", 10)
    test_x, test_y = _read_batches([path / "test_batch"], b"labels", 10)
    return make_dataset("cifar10", train_x, train_y, test_x, test_y, classes, hflip=True)


@IMAGE_DATASETS.register("cifar100")
def load_cifar100(root: Path | None) -> ImageDataset:
    """CIFAR-100 from ``cifar-100-python`` (train, test, meta), with the 100 fine labels."""
    path = _folder(root, "cifar100", "cifar-100-python", "meta")
    classes = _class_names(path / "meta", b"fine_label_names", 100)
    train_x, train_y = _read_batches([path / "train"], b"fine_labels", 100)
    test_x, test_y = _read_batches([path / "test"], b"fine_labels", 100)
    return make_dataset("cifar100", train_x, train_y, test_x, test_y, classes, hflip=True)
