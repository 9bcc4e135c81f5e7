"""Seeded, class-stratified index splits and subsets of a training set.

Search splits the training set into one part that trains the weights and one that tunes the
architecture; stratifying keeps both parts' class balance equal to the whole, which matters for
the small quick-preset subsets where an unlucky draw could starve a class. Every function
returns sorted int64 indices, so the result depends only on (labels, arguments, seed).
"""

from __future__ import annotations

import dataclasses

import torch

from nasp.data.dataset import ImageDataset, channel_stats


def _generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _allocate(counts: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` over classes in proportion to ``counts`` (largest remainder method).

    Rounding each class separately could miss the requested total by up to one per class;
    this hits it exactly while keeping every class within one of its exact share.
    """
    n = int(counts.sum())
    if n == 0:
        return torch.zeros_like(counts)
    exact = counts.to(torch.float64) * total / n
    share = exact.floor().to(torch.int64)
    left = total - int(share.sum())
    if left > 0:
        # Stable sort on the negated remainder: ties go to the lower class index.
        order = torch.sort(-(exact - share), stable=True).indices
        share[order[:left]] += 1
    return torch.minimum(share, counts)


def _pick_per_class(labels: torch.Tensor, take: torch.Tensor, seed: int) -> torch.Tensor:
    """A random ``take[c]`` indices of every class ``c``, sorted."""
    g = _generator(seed)
    chosen = []
    for c in range(len(take)):
        members = torch.nonzero(labels == c).flatten()
        if len(members):
            chosen.append(members[torch.randperm(len(members), generator=g)[: int(take[c])]])
    if not chosen:
        return torch.zeros(0, dtype=torch.int64)
    return torch.sort(torch.cat(chosen)).values


def split_indices(labels: torch.Tensor, fraction: float, seed: int,
                  stratified: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Split ``range(len(labels))`` into a ``fraction`` part and the rest, both sorted.

    With ``stratified`` every class is split in the same proportion (to within one sample),
    and the first part has exactly ``round(fraction * len(labels))`` samples.
    """
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"fraction must be in [0, 1], got {fraction}")
    labels = torch.as_tensor(labels).cpu().long()
    n = len(labels)
    k = round(fraction * n)
    if stratified and n:
        counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
        first = _pick_per_class(labels, _allocate(counts, k), seed)
    else:
        first = torch.sort(torch.randperm(n, generator=_generator(seed))[:k]).values
    mask = torch.ones(n, dtype=torch.bool)
    mask[first] = False
    return first, torch.nonzero(mask).flatten()


def stratified_sample(labels: torch.Tensor, n: int, seed: int) -> torch.Tensor:
    """``n`` indices (all of them if ``n >= len(labels)``) in the classes' proportions."""
    labels = torch.as_tensor(labels).cpu().long()
    if n >= len(labels):
        return torch.arange(len(labels))
    if n <= 0:
        return torch.zeros(0, dtype=torch.int64)
    return split_indices(labels, n / len(labels), seed)[0]


def limit_per_class(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """At most ``per_class`` random indices of every class (all of a smaller class)."""
    labels = torch.as_tensor(labels).cpu().long()
    if not len(labels):
        return torch.zeros(0, dtype=torch.int64)
    counts = torch.bincount(labels)
    return _pick_per_class(labels, counts.clamp(max=per_class), seed)


def subset(dataset: ImageDataset, max_train: int | None = None, max_test: int | None = None,
           seed: int = 0) -> ImageDataset:
    """A smaller copy of ``dataset`` (stratified, seeded), for quick runs.

    ``mean``/``std`` are recomputed, so they stay the statistics of the training images in use.
    """
    train_x, train_y, test_x, test_y = (dataset.train_x, dataset.train_y, dataset.test_x,
                                        dataset.test_y)
    if max_train is not None and max_train < len(train_y):
        keep = stratified_sample(train_y, max_train, seed)
        train_x, train_y = train_x[keep], train_y[keep]
    if max_test is not None and max_test < len(test_y):
        keep = stratified_sample(test_y, max_test, seed)
        test_x, test_y = test_x[keep], test_y[keep]
    mean, std = dataset.mean, dataset.std
    if train_x is not dataset.train_x:
        mean, std = channel_stats(train_x)
    return dataclasses.replace(dataset, train_x=train_x.contiguous(), train_y=train_y,
                               test_x=test_x.contiguous(), test_y=test_y, mean=mean, std=std)
