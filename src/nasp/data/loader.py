"""Mini-batches cut from a uint8 image tensor that lives on the training device.

The datasets nasp searches on fit in device memory as uint8 (CIFAR-10 is 150 MB), so the whole
input pipeline is a few tensor ops per batch on the device: no worker processes, no per-batch
host-to-device copies, and nothing that makes the host wait for the GPU.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterator, Sequence

import torch

from nasp.data import augment
from nasp.distributed import shard_rows
from nasp.errors import NaspError


def epoch_seed(seed: int, epoch: int) -> int:
    """A well-mixed 63-bit generator seed for ``(seed, epoch)``.

    Hashing (rather than ``seed + epoch``) keeps runs with neighbouring seeds from replaying
    each other's epochs one epoch apart.
    """
    digest = hashlib.sha256(f"nasp-loader:{seed}:{epoch}".encode()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


class DeviceLoader:
    """Batches from a uint8 image tensor held on the training device.

    Each epoch's order and augmentation draws depend only on ``(seed, epoch)``: a run resumed at
    an epoch boundary sees exactly the batches of a run that never stopped, and ``start`` in
    :meth:`epoch` even resumes mid-epoch. Loaders used side by side (train and validation
    halves during search) should get different seeds, or they draw the same permutations.

    Crop and flip act on the uint8 images (before normalisation, so crop padding is black, as
    with torchvision's RandomCrop); cutout acts after normalisation (its square is the mean
    colour), which is where DARTS applies it.
    """

    def __init__(self, x: torch.Tensor, y: torch.Tensor, batch_size: int, *,
                 mean: Sequence[float], std: Sequence[float],
                 device: torch.device | str = "cpu", shuffle: bool = True, drop_last: bool = True,
                 seed: int = 0, crop_padding: int = 0, hflip: bool = False, cutout: int = 0,
                 channels_last: bool = False, shard: tuple[int, int] = (0, 1)) -> None:
        if x.dtype != torch.uint8 or x.dim() != 4:
            raise ValueError(f"x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
        if y.shape != (x.shape[0],):
            raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        if len(mean) != x.shape[1] or len(std) != x.shape[1]:
            raise ValueError(f"mean and std need {x.shape[1]} values (one per channel)")
        if batch_size < 1:
            raise NaspError(f"invalid batch size {batch_size}", "use --batch-size 1 or more")
        if drop_last and x.shape[0] < batch_size:
            raise NaspError(f"batch size {batch_size} is larger than the {x.shape[0]} samples "
                            "to batch, so an epoch would have no batch",
                            "use a smaller --batch-size or more training samples")
        self.device = torch.device(device)
        self.x = x.to(self.device).contiguous()
        self.y = y.to(self.device, torch.int64)
        self.batch_size = batch_size
        self.shuffle, self.drop_last, self.seed = shuffle, drop_last, seed
        self.crop_padding, self.hflip, self.cutout = crop_padding, hflip, cutout
        self.channels_last = channels_last
        # data parallel: this rank reads its rows of every global batch (shard_rows)
        self.rank, self.world = shard
        if self.world > 1 and not drop_last:
            raise ValueError("a sharded loader needs drop_last (every batch splits evenly)")
        # (x / 255 - mean) / std == (x - 255 mean) * (1 / (255 std)): one sub and one mul.
        shape = (1, x.shape[1], 1, 1)
        self._shift = (torch.tensor(mean, dtype=torch.float64) * 255).float().view(shape)
        self._scale = (1 / (torch.tensor(std, dtype=torch.float64) * 255)).float().view(shape)
        self._shift, self._scale = self._shift.to(self.device), self._scale.to(self.device)

    @property
    def num_samples(self) -> int:
        return int(self.x.shape[0])

    def __len__(self) -> int:
        """Batches per epoch."""
        n = self.num_samples
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def _plan(self, epoch: int) -> dict[str, torch.Tensor]:
        """Every random draw of the epoch, made at once on CPU and sent in one transfer."""
        g = torch.Generator().manual_seed(epoch_seed(self.seed, epoch))
        n = self.num_samples
        rows = {"order": torch.randperm(n, generator=g) if self.shuffle else torch.arange(n)}
        if self.crop_padding > 0:
            rows["dy"], rows["dx"] = augment.draw_crop_offsets(n, self.crop_padding, g)
        if self.hflip:
            rows["flip"] = augment.draw_flips(n, g).long()  # hflip() takes 0/1 as well
        if self.cutout > 0:
            rows["cy"], rows["cx"] = augment.draw_cutout_centres(n, tuple(self.x.shape[2:]), g)
        plan = torch.stack(list(rows.values()))
        if self.device.type == "cuda":
            plan = plan.pin_memory()  # a truly asynchronous copy needs page-locked memory
        plan = plan.to(self.device, non_blocking=True)
        return dict(zip(rows, plan, strict=True))

    def epoch(self, epoch: int, start: int = 0) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Yield ``(images, labels)`` for ``epoch``, beginning at batch ``start``.

        Images are float32 (B, C, H, W), normalised, on the device; labels are int64. Without
        shuffling, batches are in dataset order and the last partial batch is kept unless
        ``drop_last``.
        """
        plan = self._plan(epoch)
        flip = plan.get("flip")
        n, bs = self.num_samples, self.batch_size
        for b in range(start, len(self)):
            lo, hi = shard_rows(b, bs, self.rank, self.world) if self.world > 1 else \
                (b * bs, min((b + 1) * bs, n))
            if self.shuffle:
                index = plan["order"][lo:hi]
                xb, yb = self.x.index_select(0, index), self.y.index_select(0, index)
            else:
                xb, yb = self.x[lo:hi], self.y[lo:hi]
            if "dy" in plan:
                xb = augment.crop(xb, self.crop_padding, plan["dy"][lo:hi], plan["dx"][lo:hi])
            if flip is not None:
                xb = augment.hflip(xb, flip[lo:hi])
            if self.channels_last:  # convert while the pixels are bytes; the rest keeps it
                xb = xb.contiguous(memory_format=torch.channels_last)
            xb = xb.float().sub_(self._shift).mul_(self._scale)
            if "cy" in plan:
                xb = augment.cutout(xb, self.cutout, plan["cy"][lo:hi], plan["cx"][lo:hi])
            yield xb, yb
