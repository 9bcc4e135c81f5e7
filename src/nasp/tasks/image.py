"""Image classification as a search task: the CNN supernet on a seeded train/validation split.

Following DARTS and NASP, the training set is split in two: network weights learn on one part,
architecture parameters on the other; the test set is not touched by a search.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from nasp.config import SearchConfig
from nasp.data import DeviceLoader, ImageDataset, load_image_dataset, split_indices
from nasp.errors import NaspError
from nasp.spaces import get_space
from nasp.supernet.cnn import SearchCNN
from nasp.supernet.weighting import Weighting


class ImageSearchTask:
    def __init__(self, cfg: SearchConfig, dataset: ImageDataset, device: torch.device) -> None:
        self.space = get_space(cfg.space)
        self.device = device
        self.dataset = dataset
        x, y = dataset.train_x, dataset.train_y
        if x.dim() != 4 or x.dtype != torch.uint8:
            raise NaspError(f"dataset {dataset.name!r} gave images of shape {tuple(x.shape)} "
                            f"and dtype {x.dtype}", "images must be uint8 (N, C, H, W)")
        if min(x.shape[-2:]) < 8:
            raise NaspError(f"images of {tuple(x.shape[1:])} are too small for a search "
                            "network with two reductions", "use images of at least 8x8 pixels")
        if cfg.max_train_samples and cfg.max_train_samples < len(y):
            keep, _ = split_indices(y, cfg.max_train_samples / len(y), cfg.seed)
            x, y = x[keep], y[keep]
        train_idx, val_idx = split_indices(y, cfg.train_portion, cfg.seed)
        if len(train_idx) < cfg.batch_size or len(val_idx) < cfg.batch_size:
            raise NaspError(
                f"the split has {len(train_idx)} training and {len(val_idx)} validation images, "
                f"fewer than one batch of {cfg.batch_size}",
                "lower --batch-size or use more data (--max-train-samples)")
        h = int(x.shape[-1])
        pad = cfg.crop_padding if cfg.crop_padding is not None else (4 if h >= 32 else 2)
        hflip = dataset.hflip if cfg.hflip is None else cfg.hflip
        common = dict(mean=dataset.mean, std=dataset.std, device=device)
        self.train = DeviceLoader(x[train_idx], y[train_idx], cfg.batch_size, shuffle=True,
                                  drop_last=True, seed=cfg.seed, crop_padding=pad, hflip=hflip,
                                  cutout=cfg.cutout, **common)
        # the validation stream feeds the architecture step: shuffled, not augmented (as DARTS)
        self.valid = DeviceLoader(x[val_idx], y[val_idx], cfg.batch_size, shuffle=True,
                                  drop_last=True, seed=cfg.seed + 1, **common)
        self.valid_eval = DeviceLoader(x[val_idx], y[val_idx], max(cfg.batch_size, 256),
                                       shuffle=False, drop_last=False, **common)
        self.max_steps = cfg.max_steps_per_epoch
        self.model = SearchCNN(self.space, dataset.channels, dataset.num_classes,
                               channels=cfg.channels, layers=cfg.layers,
                               stem_multiplier=cfg.stem_multiplier).to(device)

    def steps_per_epoch(self) -> int:
        n = min(len(self.train), len(self.valid))
        return min(n, self.max_steps) if self.max_steps else n

    def batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        pairs = zip(self.train.epoch(epoch), self.valid.epoch(epoch))
        for _, pair in zip(range(self.steps_per_epoch()), pairs):
            yield pair

    def loss(self, batch: Any, weighting: Weighting) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.model(x, weighting), y)

    def train_loss(self, batch: Any, weighting: Weighting):
        x, y = batch
        logits = self.model(x, weighting)
        loss = F.cross_entropy(logits, y)
        with torch.no_grad():
            sums = {"loss_sum": loss.detach() * y.numel(),
                    "correct": (logits.argmax(1) == y).sum(),
                    "count": torch.tensor(y.numel(), device=y.device)}
        return loss, sums

    @staticmethod
    def summarize(sums: dict[str, float], prefix: str) -> dict[str, float]:
        n = max(sums.get("count", 0.0), 1.0)
        return {f"{prefix}_loss": sums["loss_sum"] / n, f"{prefix}_acc": sums["correct"] / n}

    @torch.no_grad()
    def evaluate(self, weighting: Weighting) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        total = {"loss_sum": torch.zeros((), device=self.device),
                 "correct": torch.zeros((), device=self.device, dtype=torch.long),
                 "count": torch.zeros((), device=self.device, dtype=torch.long)}
        for x, y in self.valid_eval.epoch(0):
            logits = self.model(x, weighting)
            total["loss_sum"] += F.cross_entropy(logits, y, reduction="sum")
            total["correct"] += (logits.argmax(1) == y).sum()
            total["count"] += y.numel()
        self.model.train(was_training)
        return self.summarize({k: float(v) for k, v in total.items()}, "valid")

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def build_image_task(cfg: SearchConfig, device: torch.device) -> ImageSearchTask:
    return ImageSearchTask(cfg, load_image_dataset(cfg.data, cfg.data_root), device)
