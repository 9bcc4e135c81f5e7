"""DeviceLoader: reproducible epochs, full coverage, correct normalisation and augmentation."""

from __future__ import annotations

import pytest
import torch

from nasp.data import DeviceLoader
from nasp.errors import NaspError

N = 103


def data(n: int = N, c: int = 3, h: int = 6, w: int = 6) -> tuple[torch.Tensor, torch.Tensor]:
    x = torch.randint(0, 256, (n, c, h, w), generator=torch.Generator().manual_seed(0))
    return x.to(torch.uint8), torch.arange(n)  # the label is the sample's index


def loader(**kw) -> DeviceLoader:
    x, y = data()
    args = dict(mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3), seed=1, crop_padding=2,
                hflip=True, cutout=3)
    args.update(kw)
    return DeviceLoader(x, y, 10, **args)


def batches(ld: DeviceLoader, epoch: int, start: int = 0) -> list[tuple[torch.Tensor,
                                                                         torch.Tensor]]:
    return list(ld.epoch(epoch, start))


def test_same_seed_and_epoch_give_identical_batches() -> None:
    a, b = batches(loader(), 3), batches(loader(), 3)  # two loaders, as after a restart
    assert len(a) == len(b) == 10
    for (xa, ya), (xb, yb) in zip(a, b, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_different_epochs_and_seeds_differ() -> None:
    ld = loader()
    order0 = torch.cat([y for _, y in ld.epoch(0)])
    order1 = torch.cat([y for _, y in ld.epoch(1)])
    assert not torch.equal(order0, order1)
    assert not torch.equal(order0, torch.cat([y for _, y in loader(seed=2).epoch(0)]))


def test_every_sample_once_per_epoch() -> None:
    full = loader(drop_last=False)
    assert len(full) == 11
    seen = torch.cat([y for _, y in full.epoch(0)])
    assert torch.equal(seen.sort().values, torch.arange(N))
    dropped = loader()
    assert len(dropped) == 10
    seen = torch.cat([y for _, y in dropped.epoch(0)])
    assert len(seen) == 100 and len(seen.unique()) == 100


def test_resume_mid_epoch() -> None:
    ld = loader()
    full, rest = batches(ld, 4), batches(ld, 4, start=6)
    assert len(rest) == 4
    for (xa, ya), (xb, yb) in zip(full[6:], rest, strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)


def test_evaluation_batches_in_order_and_normalised() -> None:
    x, y = data()
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    ld = DeviceLoader(x, y, 10, mean=mean, std=std, shuffle=False, drop_last=False)
    out = batches(ld, 0)
    assert [len(yb) for _, yb in out] == [10] * 10 + [3]
    xs = torch.cat([xb for xb, _ in out])
    assert xs.dtype == torch.float32 and torch.equal(torch.cat([yb for _, yb in out]), y)
    ref = (x.double() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(
        1, 3, 1, 1)
    assert torch.allclose(xs.double(), ref, atol=1e-5)
    assert torch.equal(torch.cat([xb for xb, _ in batches(ld, 7)]), xs)  # epoch-independent


def test_augmentation_is_applied_to_the_right_images() -> None:
    # All-255 images: a crop shows the (black) padding, a flip of a crop mirrors it, and a
    # cutout square becomes exactly 0 after normalisation.
    x = torch.full((N, 1, 6, 6), 255, dtype=torch.uint8)
    ld = DeviceLoader(x, torch.arange(N), 10, mean=(0.5,), std=(0.5,), crop_padding=2)
    xb, _ = next(ld.epoch(0))
    black = (xb == -1.0).flatten(1).any(dim=1)
    assert black.float().mean() > 0.5 and ((xb == 1.0) | (xb == -1.0)).all()
    ld = DeviceLoader(x, torch.arange(N), 10, mean=(0.5,), std=(0.5,), cutout=2)
    xb, _ = next(ld.epoch(0))
    assert ((xb == 0.0).flatten(1).sum(dim=1) >= 1).all()


def test_channels_last_and_errors() -> None:
    xb, _ = next(loader(channels_last=True).epoch(0))
    assert xb.is_contiguous(memory_format=torch.channels_last)
    assert torch.equal(xb, next(loader().epoch(0))[0])  # same pixels (cutout included)
    x, y = data(5)
    with pytest.raises(NaspError, match="--batch-size"):
        DeviceLoader(x, y, 10, mean=(0, 0, 0), std=(1, 1, 1))
    assert len(DeviceLoader(x, y, 10, mean=(0, 0, 0), std=(1, 1, 1), drop_last=False)) == 1
    with pytest.raises(ValueError):
        DeviceLoader(x.float(), y, 2, mean=(0, 0, 0), std=(1, 1, 1))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_batches_match_cpu_without_syncs() -> None:
    cpu = batches(loader(), 2)
    ld = loader(device="cuda")
    torch.cuda.set_sync_debug_mode("error")  # any host-device sync inside epoch() raises
    try:
        gpu = batches(ld, 2)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    for (xa, ya), (xb, yb) in zip(cpu, gpu, strict=True):
        assert torch.allclose(xa, xb.cpu(), atol=1e-6) and torch.equal(ya, yb.cpu())
