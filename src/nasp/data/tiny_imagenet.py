"""Tiny ImageNet (``tiny-imagenet-200``): 200 classes of 64x64 RGB, 500 train + 50 val each.

The official test split has no labels, so the labelled validation split serves as the test
split; search carves its own validation set out of the training images anyway.
"""

from __future__ import annotations

import os
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

_LAYOUT = ("wnids.txt, train/<wnid>/images/*.JPEG, val/images/*.JPEG and "
           "val/val_annotations.txt")
_SIZE = (64, 64)


def _read_wnids(path: Path) -> list[str]:
    if not path.is_file():
        raise NaspError(f"{path} not found", f"expected the tiny-imagenet-200 layout: {_LAYOUT}")
    wnids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if not wnids or len(set(wnids)) != len(wnids):
        raise NaspError(f"{path} lists {len(wnids)} class ids ({len(set(wnids))} distinct)",
                        "expected one distinct WordNet id (e.g. n01443537) per line")
    return sorted(wnids)  # sorted, like the folder dataset, so indices match ImageFolder tools


def _read_annotations(path: Path, known: set[str]) -> list[tuple[str, str]]:
    if not path.is_file():
        raise NaspError(f"{path} not found", f"expected the tiny-imagenet-200 layout: {_LAYOUT}")
    rows = []
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) < 2 or not fields[0] or fields[1] not in known:
            raise NaspError(f"{path}, line {n}: {line.strip()[:80]!r}",
                            "expected tab-separated <file name> <wnid from wnids.txt> "
                            "<x0> <y0> <x1> <y1>")
        rows.append((fields[0], fields[1]))
    if not rows:
        raise NaspError(f"{path} is empty", "expected one line per validation image")
    return rows


def _class_names(root: Path, wnids: list[str]) -> list[str]:
    """Readable names from words.txt ("goldfish" for n01443537) where available, else wnids."""
    words: dict[str, str] = {}
    path = root / "words.txt"
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            wnid, _, text = line.partition("\t")
            words[wnid] = text.split(",")[0].strip()
    names = [words.get(w) or w for w in wnids]
    if len(set(names)) != len(names):  # keep names unique, or reports become ambiguous
        names = [f"{n} ({w})" if names.count(n) > 1 else n
                 for n, w in zip(names, wnids, strict=True)]
    return names


@IMAGE_DATASETS.register("tiny-imagenet")
def load_tiny_imagenet(root: Path | None) -> ImageDataset:
    """Decode the JPEGs once to RGB uint8 and cache them as an ``.npz`` (1.3 GB)."""
    root = require_root("tiny-imagenet", root, "tiny-imagenet-200")
    if (root / "tiny-imagenet-200" / "wnids.txt").is_file() and not (root / "wnids.txt").exists():
        root = root / "tiny-imagenet-200"  # the parent of the extracted archive was given
    wnids = _read_wnids(root / "wnids.txt")
    index = {w: i for i, w in enumerate(wnids)}

    train_files: list[str] = []
    train_labels: list[int] = []
    for wnid in wnids:
        folder = root / "train" / wnid / "images"
        found = list_images(folder) if folder.is_dir() else []
        if not found:
            raise NaspError(f"{folder} holds no images",
                            f"expected the tiny-imagenet-200 layout: {_LAYOUT}")
        train_files += found
        train_labels += [index[wnid]] * len(found)

    annotations = root / "val" / "val_annotations.txt"
    rows = _read_annotations(annotations, set(index))
    val_images = os.path.join(root, "val", "images")
    test_files = [os.path.join(val_images, name) for name, _ in rows]
    test_labels = [index[wnid] for _, wnid in rows]
    for p in test_files:
        if not os.path.isfile(p):
            raise NaspError(f"{p} not found", f"{annotations} lists it; expected it in val/images/")

    key = fingerprint([*train_files, *test_files, annotations], root, extra="tiny-imagenet")
    arrays = load_cache(root, "tiny-imagenet", key)
    if arrays is None:
        fix = " (64x64, as in the official tiny-imagenet-200.zip)"
        arrays = {
            "train_x": decode_images(train_files, mode="RGB", size=_SIZE, fix=fix),
            "train_y": np.asarray(train_labels, np.int64),
            "test_x": decode_images(test_files, mode="RGB", size=_SIZE, fix=fix),
            "test_y": np.asarray(test_labels, np.int64),
        }
        mean, std = channel_stats(torch.from_numpy(arrays["train_x"]))
        arrays["mean"], arrays["std"] = np.asarray(mean), np.asarray(std)
        save_cache(root, "tiny-imagenet", key, arrays)
    return make_dataset("tiny-imagenet", arrays["train_x"], arrays["train_y"], arrays["test_x"],
                        arrays["test_y"], _class_names(root, wnids), hflip=True,
                        mean=arrays["mean"].tolist(), std=arrays["std"].tolist())
