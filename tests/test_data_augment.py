"""Batched augmentation: each op against a slow per-image reference."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from nasp.data import crop, cutout, hflip, random_crop, random_cutout, random_hflip
from nasp.data.augment import draw_crop_offsets

# marked ``cuda`` so that ``pytest -m cuda`` (benchmarks/gpu_check.sh) runs these cases too
DEVICES = ["cpu"] + ([pytest.param("cuda", marks=pytest.mark.cuda)]
                     if torch.cuda.is_available() else [])


def batch(dtype: torch.dtype = torch.uint8, n: int = 16, c: int = 3, h: int = 8, w: int = 7
          ) -> torch.Tensor:
    x = torch.randint(1, 256, (n, c, h, w), generator=torch.Generator().manual_seed(3))
    return x.to(dtype)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_crop_is_a_window_of_the_padded_image(dtype: torch.dtype, device: str) -> None:
    x = batch(dtype).to(device)
    pad = 3
    dy, dx = draw_crop_offsets(len(x), pad, gen())
    dy[0], dx[0], dy[1], dx[1] = 0, 0, 2 * pad, 2 * pad  # both extreme corners
    out = crop(x, pad, dy, dx)
    assert out.shape == x.shape and out.dtype == dtype and out.device == x.device
    padded = F.pad(x, (pad, pad, pad, pad))
    for i in range(len(x)):
        window = padded[i, :, dy[i]:dy[i] + x.shape[2], dx[i]:dx[i] + x.shape[3]]
        assert torch.equal(out[i], window)
    assert (out[0, :, :pad, :] == 0).all()
    assert torch.equal(out[0, :, pad:, pad:], x[0, :, :-pad, :-pad])
    assert torch.equal(crop(x, pad, torch.full((16,), pad), torch.full((16,), pad)), x)


def test_random_crop_is_seeded() -> None:
    x = batch(torch.float32)
    a = random_crop(x, 4, generator=gen(5))
    assert torch.equal(a, random_crop(x, 4, generator=gen(5)))
    assert not torch.equal(a, random_crop(x, 4, generator=gen(6)))
    assert random_crop(x, 0, generator=gen(5)) is x


@pytest.mark.parametrize("device", DEVICES)
def test_hflip_flips_exactly_the_chosen_images(device: str) -> None:
    x = batch().to(device)
    chosen = torch.tensor([i in (0, 3, 4, 15) for i in range(len(x))])
    out = hflip(x, chosen)
    for i in range(len(x)):
        assert torch.equal(out[i], x[i].flip(-1) if chosen[i] else x[i])


def test_random_hflip_rate_and_seed() -> None:
    x = batch(n=2000, c=1, h=2, w=2)
    x[:, 0, :, 0] = 0
    x[:, 0, :, 1] = 1
    out = random_hflip(x, generator=gen(7))
    flipped = out[:, 0, 0, 0] == 1
    assert 0.45 < flipped.float().mean().item() < 0.55
    assert torch.equal(out, random_hflip(x, generator=gen(7)))
    assert torch.equal(x[:, 0, 0, 1], torch.ones(2000, dtype=torch.uint8))  # input untouched


def reference_cutout(x: torch.Tensor, length: int, cy: torch.Tensor, cx: torch.Tensor
                     ) -> torch.Tensor:
    out = x.clone()
    for i in range(len(x)):
        top, left = int(cy[i]) - length // 2, int(cx[i]) - length // 2
        out[i, :, max(top, 0):max(top + length, 0), max(left, 0):max(left + length, 0)] = 0
    return out


@pytest.mark.parametrize("dtype", [torch.uint8, torch.float32])
@pytest.mark.parametrize("device", DEVICES)
def test_cutout_zeros_one_clipped_square(dtype: torch.dtype, device: str) -> None:
    x = batch(dtype, n=4, h=10, w=12).to(device)
    cy, cx = torch.tensor([5, 0, 9, 4]), torch.tensor([6, 0, 11, 1])
    out = cutout(x, 4, cy, cx)
    assert torch.equal(out.cpu(), reference_cutout(x.cpu(), 4, cy, cx))
    zeros = (out == 0).all(dim=1).sum(dim=(1, 2)).tolist()
    # full square; top-left corner (rows 0..1); bottom-right (rows 7..9); left edge (cols 0..2)
    assert zeros == [16, 4, 9, 12]
    assert (x != 0).all()  # input untouched


def test_random_cutout_squares_have_the_right_size() -> None:
    x = torch.ones(500, 2, 16, 16)
    out = random_cutout(x, 6, generator=gen(2))
    assert torch.equal(out, random_cutout(x, 6, generator=gen(2)))
    hole = out[:, 0] == 0
    assert torch.equal(hole, out[:, 1] == 0)  # the same square in every channel
    rows, cols = hole.any(dim=2).sum(dim=1), hole.any(dim=1).sum(dim=1)
    assert torch.equal(hole.sum(dim=(1, 2)), rows * cols)  # a rectangle
    assert rows.max() == 6 and cols.max() == 6 and rows.min() >= 3 and cols.min() >= 3
    assert (rows == 6).float().mean() > 0.3  # most squares are not clipped
    assert random_cutout(x, 0, generator=gen(2)) is x


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cpu_generator_gives_the_same_augmentation_on_cuda() -> None:
    x = batch(torch.float32, n=64)
    cpu = random_cutout(random_crop(x, 2, generator=gen(9)), 4, generator=gen(10))
    gpu = random_cutout(random_crop(x.cuda(), 2, generator=gen(9)), 4, generator=gen(10))
    assert torch.equal(cpu, gpu.cpu())
