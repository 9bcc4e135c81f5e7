"""Image classification as a search task: the CNN supernet on a seeded train/validation split.

Following DARTS and NASP, the training set is split in two: network weights learn on one part
(the weight split), architecture parameters on the other (the architecture split, which also
gives the per-epoch validation metrics). The test set is held out: a search never sees it, and
only ``evaluate_on="test"`` (``nasp compare``'s scoring of final architectures) reads it.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
import torch.nn.functional as F

from nasp.configs import SearchConfig
from nasp.costs import own_costs
from nasp.data import DeviceLoader, ImageDataset, load_image_dataset, split_indices
from nasp.device import resolve_memory_format
from nasp.distributed import Dist
from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.models.fixed import fix, params_m
from nasp.spaces import get_space
from nasp.spaces.base import SearchSpace
from nasp.spaces.model import build_model, is_model_ref
from nasp.supernet.cnn import SearchCNN
from nasp.supernet.model import ModelNet
from nasp.supernet.weighting import Weighting


class ImageSearchTask:
    """``--space``'s network (a registered space's supernet, or a user's model with choices,
    ``FILE.py:FUNCTION``) on the dataset's seeded weight / architecture split."""

    def __init__(self, cfg: SearchConfig, dataset: ImageDataset, device: torch.device,
                 dist: Dist | None = None) -> None:
        self.device = device
        self.dist = dist or Dist(device=device)
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
        fmt = resolve_memory_format(device, cfg.memory_format)
        common = dict(mean=dataset.mean, std=dataset.std, device=device,
                      channels_last=fmt == torch.channels_last)
        # every rank reads its shard of each global batch (one process: all of it)
        shard = (self.dist.rank, self.dist.world_size)
        self.train = DeviceLoader(x[train_idx], y[train_idx], cfg.batch_size, shuffle=True,
                                  drop_last=True, seed=cfg.seed, crop_padding=pad, hflip=hflip,
                                  cutout=cfg.cutout, shard=shard, **common)
        # the validation stream feeds the architecture step: shuffled, not augmented (as DARTS)
        self.valid = DeviceLoader(x[val_idx], y[val_idx], cfg.batch_size, shuffle=True,
                                  drop_last=True, seed=cfg.seed + 1, shard=shard, **common)
        ex, ey = (x[val_idx], y[val_idx]) if cfg.evaluate_on == "valid" else \
            (dataset.test_x, dataset.test_y)
        lo, hi = self.dist.eval_range(len(ey))  # a part each; the sums are added up
        self.valid_eval = DeviceLoader(ex[lo:hi], ey[lo:hi], max(cfg.batch_size, 256),
                                       shuffle=False, drop_last=False, **common)
        self.eval_prefix = cfg.evaluate_on
        self.target_device = cfg.target_device
        self.max_steps = cfg.max_steps_per_epoch
        self.net: ModelNet | None = None
        if is_model_ref(cfg.space):
            model = build_model(cfg.space, dataset.channels, dataset.num_classes)
            self.net = ModelNet(model.to(device), task="cnn")
            self.space, self.model, self.forward = self.net.space, model, self.net
            self._check_model(cfg.space, dataset.num_classes)  # lazy modules materialise here
            model.to(memory_format=fmt)
        else:
            self.space = get_space(cfg.space)
            self.model = search_network(self.space, dataset.channels, dataset.num_classes,
                                        cfg).to(device).to(memory_format=fmt)
            self.forward = self.model

    def _check_model(self, ref: str, num_classes: int) -> None:
        """A user model's first training batch with every candidate running: its choices, and
        logits of shape (batch, classes), before any step."""
        x, _ = next(iter(self.train.epoch(0)))
        assert self.net is not None
        logits = self.net.inspect(lambda: self.model(x))
        if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (len(x), num_classes):
            got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else \
                type(logits).__name__
            raise NaspError(f"--space {ref}'s model returns {got} for a batch of {len(x)} "
                            f"images of {tuple(x.shape[1:])}; a classifier of this data "
                            f"returns ({len(x)}, {num_classes})",
                            "return one logit per class from forward")

    def steps_per_epoch(self) -> int:
        n = min(len(self.train), len(self.valid))
        return min(n, self.max_steps) if self.max_steps else n

    def batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        pairs = zip(self.train.epoch(epoch), self.valid.epoch(epoch))
        for _, pair in zip(range(self.steps_per_epoch()), pairs):
            yield pair

    def loss(self, batch: Any, weighting: Weighting) -> torch.Tensor:
        x, y = batch
        return F.cross_entropy(self.forward(x, weighting), y)

    def train_loss(self, batch: Any, weighting: Weighting):
        x, y = batch
        logits = self.forward(x, weighting)
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
            logits = self.forward(x, weighting)
            total["loss_sum"] += F.cross_entropy(logits, y, reduction="sum")
            total["correct"] += (logits.argmax(1) == y).sum()
            total["count"] += y.numel()
        self.model.train(was_training)
        total = self.dist.sum_metrics(total)
        return self.summarize({k: float(v) for k, v in total.items()}, self.eval_prefix)

    def genotype_metrics(self, genotype: Genotype) -> dict[str, float]:
        """The benchmark's ground truth of a NAS-Bench-201 cell (200-epoch test accuracy on
        CIFAR-10, CIFAR-100, ImageNet16-120, and with ``--target-device`` its measured latency
        there), recorded every epoch; nothing for other spaces."""
        if genotype.family != "nb201":
            return {}
        from nasp.nb201 import lookup

        out = {f"nb201_{k}": v for k, v in lookup(genotype).items()}
        if self.target_device:
            from nasp.nb201.latency import device_latency

            out["nb201_latency_ms"] = device_latency(genotype, self.target_device)
        return out

    def eval_params_m(self, genotype: Genotype) -> float:
        """Parameters (M) of the genotype's evaluation network at the paper's size (20 cells,
        C=36) for this data, for size-vs-λ plots."""
        if self.net is not None:  # a user model: its fixed network as it was searched
            return params_m(fix(self.model, genotype))
        from nasp.models import build_eval_model, count_params

        ds = self.dataset
        net = build_eval_model(genotype, ds.channels, ds.num_classes, ds.image_size[-1],
                               auxiliary=False)  # the family's paper size (nb201: C=16, N=5)
        return count_params(net) / 1e6

    def raw_costs(self, kind: str, table: str | None = None) -> dict[str, torch.Tensor]:
        """A user model's candidate costs (``nasp.supernet.model.ModelNet.raw_costs``)."""
        assert self.net is not None
        return own_costs(self.net, kind, table)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


def search_network(space: SearchSpace, in_channels: int, num_classes: int,
                   cfg: SearchConfig) -> torch.nn.Module:
    """The supernet of the space's family: DARTS-style cells, or NAS-Bench-201's fixed
    skeleton (``layers`` cells in three stages)."""
    if space.family == "nb201":
        from nasp.supernet.nb201 import NB201SearchNet

        if cfg.layers % 3:
            raise NaspError(f"an nb201 network has three stages of cells, so --layers "
                            f"{cfg.layers} must be a multiple of 3", "use --layers 15 (the "
                            "benchmark's) or 3, 6, 9, ...")
        return NB201SearchNet(space, in_channels, num_classes, channels=cfg.channels,
                              cells_per_stage=cfg.layers // 3)
    return SearchCNN(space, in_channels, num_classes, channels=cfg.channels, layers=cfg.layers,
                     stem_multiplier=cfg.stem_multiplier)


def build_image_task(cfg: SearchConfig, device: torch.device,
                     dist: Dist | None = None) -> ImageSearchTask:
    return ImageSearchTask(cfg, load_image_dataset(cfg.data, cfg.data_root), device, dist)
