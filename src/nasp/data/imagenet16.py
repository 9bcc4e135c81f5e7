"""ImageNet16-120: the downsampled ImageNet NAS-Bench-201 trains on (16x16 RGB, 120 classes).

The files are those of the downsampled ImageNet 16x16 release (Chrabaszcz et al., 2017):
pickled dicts ``train_data_batch_1`` .. ``train_data_batch_10`` and ``val_data``, each with
``data`` (N x 768 uint8 rows, channel-major 3x16x16) and ``labels`` (1-based, 1..1000). The
benchmark keeps the images of labels 1..120 (here classes 0..119); ``val_data`` is the test
split (the benchmark halves it into its validation and test sets). Batches are filtered one at
a time, so reading never holds more than one full batch (~100 MB) beyond the kept images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from nasp.data.dataset import IMAGE_DATASETS, ImageDataset, make_dataset, require_root
from nasp.data.pickles import restricted_load
from nasp.errors import NaspError

NUM_CLASSES = 120
SIDE = 16
TRAIN_FILES = tuple(f"train_data_batch_{i}" for i in range(1, 11))
TEST_FILE = "val_data"
_LAYOUT = "train_data_batch_1..10 and val_data (the downsampled ImageNet 16x16 pickles)"


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise NaspError(f"{path} not found", f"expected {_LAYOUT} in the --data-root folder")
    try:
        with open(path, "rb") as f:
            obj = restricted_load(f)
    except Exception as e:  # pickle raises many types on damaged input
        raise NaspError(f"cannot read {path}: {type(e).__name__}: {e}",
                        "expected a downsampled-ImageNet pickle; download it again") from None
    if not isinstance(obj, dict):
        raise NaspError(f"{path} holds a {type(obj).__name__}, not a dict",
                        "expected a downsampled-ImageNet pickle (a dict with data and labels)")
    obj = {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}
    missing = [k for k in ("data", "labels") if k not in obj]
    if missing:
        raise NaspError(f"{path} has no key(s) {', '.join(missing)}",
                        "expected a downsampled-ImageNet pickle with keys data and labels")
    return obj


def _read(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """The images and 0-based labels of the first 120 classes in one file."""
    batch = _load(path)
    x = np.asarray(batch["data"])
    y = np.asarray(batch["labels"])
    if x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3 * SIDE * SIDE:
        raise NaspError(f"{path}: data is {x.dtype} {x.shape}",
                        f"expected uint8 rows of {3 * SIDE * SIDE} values (3x16x16, "
                        "channel-major)")
    if y.ndim != 1 or len(y) != len(x) or not np.issubdtype(y.dtype, np.integer):
        raise NaspError(f"{path}: labels are {y.dtype} {y.shape} for {len(x)} images",
                        "expected one integer label per image")
    if len(y) and (y.min() < 1 or y.max() > 1000):
        raise NaspError(f"{path}: label {int(y.min() if y.min() < 1 else y.max())} is out of "
                        "range", "expected the release's 1-based labels 1..1000")
    keep = y <= NUM_CLASSES
    return x[keep].reshape(-1, 3, SIDE, SIDE), (y[keep] - 1).astype(np.int64)


def _concat(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@IMAGE_DATASETS.register("imagenet16-120")
def load_imagenet16_120(root: Path | None) -> ImageDataset:
    """ImageNet16-120 from the folder of the 16x16 pickles (or its parent ``ImageNet16``)."""
    path = require_root("imagenet16-120", root, _LAYOUT)
    if not (path / TEST_FILE).exists() and (path / "ImageNet16" / TEST_FILE).exists():
        path = path / "ImageNet16"
    train_x, train_y = _concat([_read(path / name) for name in TRAIN_FILES])
    test_x, test_y = _read(path / TEST_FILE)
    if not len(train_y) or not len(test_y):
        raise NaspError(f"{path}: no image of the first {NUM_CLASSES} classes in the "
                        f"{'training' if not len(train_y) else 'validation'} files",
                        "expected the full downsampled ImageNet 16x16 release")
    classes = [f"class {i}" for i in range(1, NUM_CLASSES + 1)]  # the release's 1-based labels
    return make_dataset("imagenet16-120", train_x, train_y, test_x, test_y, classes, hflip=True)
