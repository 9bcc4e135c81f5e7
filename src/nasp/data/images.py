"""Image datasets by name: ``load_image_dataset("cifar10", root)``.

Importing this module registers every image loader in :data:`IMAGE_DATASETS`; each loader
lives in its own module (``idx``, ``cifar``, ``imagenet16``, ``folder``, ``tiny_imagenet``).
"""

from __future__ import annotations

import os
from pathlib import Path

from nasp.data import (  # noqa: F401  (they register themselves)
    cifar,
    folder,
    idx,
    imagenet16,
    tiny_imagenet,
)
from nasp.data.dataset import IMAGE_DATASETS, ImageDataset, channel_stats, make_dataset

__all__ = ["IMAGE_DATASETS", "ImageDataset", "channel_stats", "load_image_dataset",
           "make_dataset"]


def load_image_dataset(name: str, root: str | os.PathLike | None = None) -> ImageDataset:
    """Load dataset ``name`` (see ``IMAGE_DATASETS.names()``) from folder ``root``.

    Raises :class:`nasp.errors.NaspError` for an unknown name, a missing root where one is
    needed, and for any missing or malformed file (the message names the file).
    """
    loader = IMAGE_DATASETS.get(name)
    return loader(Path(root).expanduser() if root is not None else None)
