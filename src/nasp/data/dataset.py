"""The in-memory image dataset every loader returns, and the registry of dataset names.

All datasets are small enough (<= Tiny ImageNet, 1.3 GB as uint8) to live in memory as one
uint8 tensor per split. Keeping them as uint8 rather than float makes them 4x smaller, so they
can be moved to the GPU once and batched there without a host-side input pipeline.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from nasp.errors import NaspError
from nasp.registry import Registry

Loader = Callable[[Path | None], "ImageDataset"]

IMAGE_DATASETS: Registry[Loader] = Registry("dataset", "--data")


@dataclass
class ImageDataset:
    """Both splits of an image classification dataset, as uint8 (N, C, H, W) CPU tensors.

    ``mean`` and ``std`` are per-channel statistics of ``train_x / 255``, so that normalisation
    never peeks at the test split. ``hflip`` records whether a mirrored image keeps its label,
    which is a property of the data (digits are not mirror-symmetric, clothes are).
    """

    name: str
    train_x: torch.Tensor
    train_y: torch.Tensor
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool

    def __post_init__(self) -> None:
        # These are invariants of nasp's own loaders; a violation is a bug, not a user error.
        splits = (("train", self.train_x, self.train_y), ("test", self.test_x, self.test_y))
        for split, x, y in splits:
            if x.dtype != torch.uint8 or x.dim() != 4:
                raise ValueError(f"{split}_x must be uint8 (N, C, H, W), "
                                 f"got {x.dtype} {tuple(x.shape)}")
            if y.dtype != torch.int64 or y.shape != (x.shape[0],):
                raise ValueError(f"{split}_y must be int64 ({x.shape[0]},), "
                                 f"got {y.dtype} {tuple(y.shape)}")
        if self.train_x.shape[1:] != self.test_x.shape[1:]:
            raise ValueError(f"train and test shapes differ: {tuple(self.train_x.shape[1:])} vs "
                             f"{tuple(self.test_x.shape[1:])}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ValueError("mean and std need one value per channel")

    @property
    def channels(self) -> int:
        return int(self.train_x.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.train_x.shape[2]), int(self.train_x.shape[3])

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.channels, *self.image_size

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __repr__(self) -> str:  # the default would print four large tensors
        return (f"ImageDataset({self.name!r}, train={len(self.train_y)}, test={len(self.test_y)}, "
                f"shape={self.shape}, classes={self.num_classes}, hflip={self.hflip})")


def channel_stats(x: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of ``x / 255`` for a uint8 (N, C, H, W) tensor.

    Uses a 256-bin histogram per channel instead of a float copy, so Tiny ImageNet (1.2 G values)
    needs no float copy of gigabytes and the result does not depend on float summation order.
    """
    values = torch.arange(256, dtype=torch.float64) / 255.0
    channels = x.shape[1]
    # One bincount per channel: far faster than many small ones (torch's per-call overhead).
    weights = torch.stack([torch.bincount(x[:, c].reshape(-1), minlength=256)
                           for c in range(channels)]).to(torch.float64)
    n = weights.sum(dim=1, keepdim=True).clamp(min=1)
    mean = (weights * values).sum(dim=1, keepdim=True) / n
    var = (weights * (values - mean) ** 2).sum(dim=1) / n.squeeze(1)
    return tuple(mean.squeeze(1).tolist()), tuple(var.sqrt().tolist())


def make_dataset(name: str, train_x: np.ndarray | torch.Tensor, train_y: np.ndarray | torch.Tensor,
                 test_x: np.ndarray | torch.Tensor, test_y: np.ndarray | torch.Tensor,
                 classes: list[str], *, hflip: bool,
                 mean: Sequence[float] | None = None,
                 std: Sequence[float] | None = None) -> ImageDataset:
    """Build an :class:`ImageDataset` from arrays, computing the normalisation statistics.

    Pass ``mean`` and ``std`` when they are already known (cached): on Tiny ImageNet computing
    them takes seconds.
    """

    def tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        if isinstance(a, np.ndarray) and not a.flags.writeable:
            a = np.array(a)  # e.g. np.frombuffer over bytes; torch wants writable memory
        return torch.as_tensor(a).to(dtype).contiguous()

    tx = tensor(train_x, torch.uint8)
    if mean is None or std is None:
        mean, std = channel_stats(tx)
    return ImageDataset(name, tx, tensor(train_y, torch.int64), tensor(test_x, torch.uint8),
                        tensor(test_y, torch.int64), list(classes),
                        tuple(float(m) for m in mean), tuple(float(s) for s in std), hflip)


def require_root(name: str, root: str | os.PathLike | None, expected: str) -> Path:
    """The dataset folder, or an error that says which option to pass and what belongs there."""
    if root is None:
        raise NaspError(f"dataset {name!r} needs the folder of its files",
                        f"pass --data-root <folder holding {expected}>")
    path = Path(root).expanduser()
    if not path.is_dir():
        raise NaspError(f"data root {path} is not a folder",
                        f"pass --data-root <folder holding {expected}>")
    return path
