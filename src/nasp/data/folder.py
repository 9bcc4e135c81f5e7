"""Any image classification dataset laid out as ``train/<class>/*`` and ``test/<class>/*``.

This is the escape hatch for data nasp has no loader for: export it as image files, one folder
per class. Classes are the sorted folder names under ``train/``, so their indices are the same
on every machine.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from nasp.data.dataset import (
    IMAGE_DATASETS,
    ImageDataset,
    channel_stats,
    make_dataset,
    require_root,
)
from nasp.data.imagefiles import (
    decode_images,
    fingerprint,
    list_images,
    load_cache,
    save_cache,
)
from nasp.errors import NaspError

_LAYOUT = "train/<class>/<images> and test/<class>/<images> (or val/ instead of test/)"


def _class_dirs(split_dir: Path) -> list[Path]:
    return sorted(p for p in split_dir.iterdir() if p.is_dir() and not p.name.startswith("."))


def _scan(split_dir: Path, class_index: dict[str, int]) -> tuple[list[str], list[int]]:
    files, labels = [], []
    for d in _class_dirs(split_dir):
        if d.name not in class_index:
            raise NaspError(f"class folder {d} has no counterpart in {split_dir.parent / 'train'}",
                            "every test class must also be a training class")
        found = list_images(d)
        files += found
        labels += [class_index[d.name]] * len(found)
    return files, labels


@IMAGE_DATASETS.register("folder")
def load_folder(root: Path | None) -> ImageDataset:
    """Decode every image under ``root`` once (Pillow) and cache the uint8 arrays."""
    root = require_root("folder", root, _LAYOUT)
    train_dir = root / "train"
    test_dir = next((d for d in (root / "test", root / "val") if d.is_dir()), None)
    if not train_dir.is_dir() or test_dir is None:
        missing = train_dir if not train_dir.is_dir() else root / "test"
        raise NaspError(f"{missing} is not a folder", f"expected {_LAYOUT} under {root}")
    classes = [d.name for d in _class_dirs(train_dir)]
    if not classes:
        raise NaspError(f"{train_dir} has no class folders", f"expected {_LAYOUT}")
    index = {c: i for i, c in enumerate(classes)}
    train_files, train_labels = _scan(train_dir, index)
    test_files, test_labels = _scan(test_dir, index)
    counts = np.bincount(np.asarray(train_labels, np.int64), minlength=len(classes))
    if (counts == 0).any():
        empty = classes[int(np.flatnonzero(counts == 0)[0])]
        raise NaspError(f"{train_dir / empty} holds no images",
                        "remove the folder or add images (png, jpg, bmp, gif, webp, tiff)")
    if not test_files:
        raise NaspError(f"{test_dir} holds no images", f"expected {_LAYOUT}")

    key = fingerprint(train_files + test_files, root, extra="folder")
    arrays = load_cache(root, "folder", key)
    if arrays is None:
        fix = "; resize them first, e.g. with Pillow's Image.resize"
        train_x = decode_images(train_files, fix=fix)
        size = (train_x.shape[3], train_x.shape[2])
        # Gray training images with colour test images (or the reverse) become RGB throughout.
        mode = None if train_x.shape[1] == 1 else "RGB"
        test_x = decode_images(test_files, mode=mode, size=size, like=train_files[0], fix=fix)
        if test_x.shape[1] == 3 and train_x.shape[1] == 1:
            train_x = np.repeat(train_x, 3, axis=1)
        arrays = {"train_x": train_x, "train_y": np.asarray(train_labels, np.int64),
                  "test_x": test_x, "test_y": np.asarray(test_labels, np.int64),
                  "classes": np.asarray(classes)}
        mean, std = channel_stats(torch.from_numpy(arrays["train_x"]))
        arrays["mean"], arrays["std"] = np.asarray(mean), np.asarray(std)
        save_cache(root, "folder", key, arrays)
    return make_dataset("folder", arrays["train_x"], arrays["train_y"], arrays["test_x"],
                        arrays["test_y"], [str(c) for c in arrays["classes"]], hflip=True,
                        mean=arrays["mean"].tolist(), std=arrays["std"].tolist())
