"""Batched data augmentation as tensor ops on a whole (N, C, H, W) batch, on any device.

Each augmentation comes in two layers: a deterministic function that takes the per-image
parameters as tensors (``crop``, ``hflip``, ``cutout``), and a ``random_*`` wrapper that draws
them from an explicit ``torch.Generator``. The loader draws a whole epoch's parameters at once
and calls the deterministic layer, so there is no per-image Python loop and no host-device sync.

Randomness comes from a CPU generator by default, on purpose: the same seed then yields the
same crops and flips on a laptop CPU and on any GPU (device generators use different
algorithms), the generator state is a small CPU tensor that checkpoints trivially, and the draws
are a few integers per image: ``DeviceLoader`` sends a whole epoch's worth to the device in one
non-blocking copy. A CUDA generator also works; the parameters are then drawn on its device.

All functions accept uint8 or floating-point images and never modify their input.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _on(t: torch.Tensor, device: torch.device) -> torch.Tensor:
    return t.to(device, non_blocking=True)


def _draw_int(high: int, n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.randint(0, high, (n,), generator=generator, device=generator.device)


def draw_crop_offsets(n: int, padding: int, generator: torch.Generator
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (dy, dx) window offsets into the padded image, uniform in [0, 2 * padding]."""
    return _draw_int(2 * padding + 1, n, generator), _draw_int(2 * padding + 1, n, generator)


def draw_flips(n: int, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Per-image booleans: True means mirror the image."""
    return torch.rand(n, generator=generator, device=generator.device) < p


def draw_cutout_centres(n: int, size: tuple[int, int], generator: torch.Generator
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image (cy, cx) square centres, uniform over the image (as in DARTS)."""
    return _draw_int(size[0], n, generator), _draw_int(size[1], n, generator)


def crop(x: torch.Tensor, padding: int, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Zero-pad by ``padding`` and cut an (H, W) window at per-image offsets ``(dy, dx)``.

    Image ``i`` of the result is ``pad(x)[i, :, dy[i]:dy[i]+H, dx[i]:dx[i]+W]``. Every output
    row is a contiguous run of W values of the padded batch, so the whole crop is one
    ``index_select`` of row start offsets from a sliding-window view (``unfold``) of the flat
    buffer: about 3x faster on CPU than an element-wise gather, and device-agnostic.
    """
    n, c, h, w = x.shape
    dev = x.device
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    hp, wp = h + 2 * padding, w + 2 * padding
    windows = x.contiguous().view(-1).unfold(0, w, 1)  # row j = flat[j : j + w], no copy
    plane = torch.arange(n * c, device=dev).view(n, c, 1) * hp
    top = _on(dy, dev).view(n, 1, 1) + torch.arange(h, device=dev).view(1, 1, h)
    starts = (plane + top) * wp + _on(dx, dev).view(n, 1, 1)
    return windows.index_select(0, starts.view(-1)).view(n, c, h, w)


def hflip(x: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Mirror exactly the images where ``flip`` (bool, or 0/1 integers) is set.

    Picks each image from the interleaved stack (original, mirrored) with ``index_select``:
    a data-independent choice (no sync), and on CPU 4x faster than ``torch.where`` with a
    broadcast mask.
    """
    n = x.shape[0]
    both = torch.stack((x, x.flip(3)), 1).view(2 * n, *x.shape[1:])
    pick = 2 * torch.arange(n, device=x.device) + _on(flip, x.device).long()
    return both.index_select(0, pick)


def cutout(x: torch.Tensor, length: int, cy: torch.Tensor, cx: torch.Tensor) -> torch.Tensor:
    """Zero one ``length`` x ``length`` square per image, centred at ``(cy, cx)``.

    The square spans rows ``cy - length // 2`` to ``cy - length // 2 + length - 1`` and is
    clipped at the borders, as in DARTS (for odd lengths DARTS zeroes one row and column less;
    here the square is always ``length`` wide before clipping). Implemented as a multiplication
    by a 0/1 mask, which on CPU is far faster than ``masked_fill`` with a broadcast mask.
    """
    n, _, h, w = x.shape
    dev = x.device
    top = _on(cy, dev).view(n, 1) - length // 2
    left = _on(cx, dev).view(n, 1) - length // 2
    r = torch.arange(h, device=dev).view(1, h)
    c = torch.arange(w, device=dev).view(1, w)
    out_rows = (r < top) | (r >= top + length)
    out_cols = (c < left) | (c >= left + length)
    keep = out_rows.view(n, 1, h, 1) | out_cols.view(n, 1, 1, w)
    return x * keep.to(x.dtype)


def random_crop(x: torch.Tensor, padding: int, *, generator: torch.Generator) -> torch.Tensor:
    """Random (H, W) crop of the zero-padded batch (DARTS uses ``padding=4`` for 32x32)."""
    if padding <= 0:
        return x
    dy, dx = draw_crop_offsets(x.shape[0], padding, generator)
    return crop(x, padding, dy, dx)


def random_hflip(x: torch.Tensor, *, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image with probability ``p``."""
    return hflip(x, draw_flips(x.shape[0], generator, p))


def random_cutout(x: torch.Tensor, length: int, *, generator: torch.Generator) -> torch.Tensor:
    """Zero one ``length`` x ``length`` square per image at a uniformly random centre."""
    if length <= 0:
        return x
    cy, cx = draw_cutout_centres(x.shape[0], (x.shape[2], x.shape[3]), generator)
    return cutout(x, length, cy, cx)
