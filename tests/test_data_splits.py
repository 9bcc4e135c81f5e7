"""Seeded, stratified splits and subsets."""

from __future__ import annotations

import pytest
import torch

from nasp.data import limit_per_class, split_indices, stratified_sample, subset
from nasp.data.dataset import make_dataset

# unbalanced on purpose: 0: 41, 1: 30, 2: 19, 3: 7, 4: 3
LABELS = torch.cat([torch.full((n,), c) for c, n in enumerate([41, 30, 19, 7, 3])])
LABELS = LABELS[torch.randperm(len(LABELS), generator=torch.Generator().manual_seed(0))]


@pytest.mark.parametrize("fraction", [0.5, 0.3, 0.9])
def test_stratified_split_partitions_in_proportion(fraction: float) -> None:
    a, b = split_indices(LABELS, fraction, seed=0)
    assert len(a) == round(fraction * len(LABELS))
    assert torch.equal(torch.cat([a, b]).sort().values, torch.arange(len(LABELS)))
    assert torch.equal(a, a.sort().values) and a.dtype == torch.int64
    counts = torch.bincount(LABELS).double()
    got = torch.bincount(LABELS[a], minlength=5).double()
    assert ((got - fraction * counts).abs() < 1).all()


def test_split_depends_only_on_the_seed() -> None:
    a, _ = split_indices(LABELS, 0.5, seed=3)
    assert torch.equal(a, split_indices(LABELS, 0.5, seed=3)[0])
    assert not torch.equal(a, split_indices(LABELS, 0.5, seed=4)[0])
    plain, rest = split_indices(LABELS, 0.5, seed=3, stratified=False)
    assert len(plain) == 50 and len(rest) == 50
    assert torch.equal(plain, split_indices(LABELS, 0.5, seed=3, stratified=False)[0])
    with pytest.raises(ValueError):
        split_indices(LABELS, 1.5, seed=0)


def test_stratified_sample_and_limit_per_class() -> None:
    idx = stratified_sample(LABELS, 20, seed=1)
    assert len(idx) == 20 and len(idx.unique()) == 20
    assert torch.bincount(LABELS[idx], minlength=5).tolist() == [8, 6, 4, 1, 1]
    assert torch.equal(stratified_sample(LABELS, 10_000, seed=1), torch.arange(100))
    lim = limit_per_class(LABELS, 10, seed=1)
    assert torch.bincount(LABELS[lim]).tolist() == [10, 10, 10, 7, 3]
    assert not torch.equal(lim, limit_per_class(LABELS, 10, seed=2))


def test_subset_shrinks_and_recomputes_stats() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (100, 2, 4, 4), generator=g, dtype=torch.uint8)
    ds = make_dataset("toy", x, LABELS, x[:30], LABELS[:30], list("abcde"), hflip=True)
    small = subset(ds, max_train=40, max_test=10, seed=0)
    assert small.train_x.shape == (40, 2, 4, 4) and len(small.test_y) == 10
    assert torch.bincount(small.train_y, minlength=5).tolist() == [16, 12, 8, 3, 1]
    expected = (small.train_x.double() / 255).mean(dim=(0, 2, 3))
    assert small.mean == pytest.approx(expected.tolist())
    assert subset(ds).train_x is ds.train_x
