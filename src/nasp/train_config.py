"""Training configuration of a genotype's evaluation network: one flat dataclass and presets.

Resolution order: dataclass defaults < preset < config file (JSON) < explicit options. The
dataclass defaults are the CIFAR-10 recipe of DARTS and NASP (REFERENCE.md); the presets are

* ``paper``: that recipe (20 cells, C=36, 600 epochs, ...). With 64x64 data (Tiny ImageNet)
  ``paper`` becomes ``tiny-imagenet`` automatically.
* ``tiny-imagenet``: the NASP release's Tiny ImageNet recipe (14 cells, C=48, 250 epochs, lr 0.1
  decayed by 0.97 per epoch, weight decay 3e-5, label smoothing 0.1). What the reference leaves
  open follows DARTS's ImageNet recipe (**ours**): batch 128, no drop-path, no cutout.
* ``quick`` (the default): a small network on the bundled Fashion-MNIST sample that trains in
  well under 15 minutes on 2 CPU cores and still reports a real test accuracy.

The resolved config is written to the run folder, so ``--resume`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from nasp import config_layers
from nasp.config_layers import build, check_values, option_layers
from nasp.errors import NaspError


@dataclass
class TrainConfig:
    # what to train
    genotype: str = "DARTS_V2"         # published name, genotype.json, or a search run folder
    data: str = "fashion-mnist-sample"  # dataset name (see `nasp train --help`)
    data_root: str | None = None       # folder of the dataset's files, where it needs one
    preset: str = "quick"              # quick, paper, tiny-imagenet
    seed: int = 0
    device: str = "auto"               # auto, cpu, cuda, cuda:1, ...
    out: str | None = None             # run folder (default: runs/train-<genotype>-<data>-s<seed>)
    # budget
    epochs: int = 600
    batch_size: int = 96
    eval_batch_size: int = 256
    valid_portion: float = 0.0         # share of the training set held out to pick best.pt;
    #                                    0 trains on all of it and validates on the test set
    max_train_samples: int | None = None  # stratified subset of the training set
    max_steps_per_epoch: int | None = None  # cap on optimizer steps per epoch (smoke tests)
    # optimizer
    lr: float = 0.025
    lr_schedule: str = "cosine"        # cosine (to 0 over the epochs) or step (x gamma per epoch)
    lr_gamma: float = 0.97             # per-epoch decay of the step schedule
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0             # max gradient norm; 0 turns clipping off
    label_smoothing: float = 0.0
    # network
    channels: int = 36                 # C: channels of the first cells
    layers: int = 20                   # cells; reductions at layers//3 and 2*layers//3
    auxiliary: bool = True             # auxiliary classifier after cell 2*layers//3
    auxiliary_weight: float = 0.4
    drop_path_prob: float = 0.2        # reached at the last epoch, linearly from 0
    # augmentation
    cutout: int = 16                   # side of the cut-out square; 0 turns cutout off
    crop_padding: int | None = None    # random-crop padding; None: 4 for >=32 px images, else 2
    hflip: bool | None = None          # random horizontal flips; None: as the dataset says
    # speed
    amp: bool | None = None            # bf16 autocast; None: on for CUDA
    channels_last: bool | None = None  # NHWC memory format; None: on for CUDA
    # bookkeeping
    log_every: int = 20                # progress-bar refresh (one host sync) every N steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[str, dict[str, Any]] = {
    # REFERENCE.md: the CIFAR-10 evaluation recipe of DARTS and NASP (= the dataclass defaults).
    "paper": dict(epochs=600, batch_size=96, lr=0.025, lr_schedule="cosine", momentum=0.9,
                  weight_decay=3e-4, grad_clip=5.0, channels=36, layers=20, auxiliary=True,
                  auxiliary_weight=0.4, drop_path_prob=0.2, cutout=16, label_smoothing=0.0,
                  valid_portion=0.0),
    # REFERENCE.md: NASP's Tiny ImageNet recipe; batch, drop-path and cutout as DARTS ImageNet.
    "tiny-imagenet": dict(epochs=250, batch_size=128, lr=0.1, lr_schedule="step", lr_gamma=0.97,
                          momentum=0.9, weight_decay=3e-5, grad_clip=5.0, channels=48,
                          layers=14, auxiliary=True, auxiliary_weight=0.4, drop_path_prob=0.0,
                          cutout=0, label_smoothing=0.1, valid_portion=0.0),
    # Measured (DARTS_V2, 2 CPU cores, torch 2.13): 8 min 35 s for the whole command, test
    # accuracy 87.9% (8 epochs: 11 min 18 s, 88.1%). ~80 s per epoch; size by that.
    "quick": dict(epochs=6, batch_size=96, lr=0.05, lr_schedule="cosine", momentum=0.9,
                  weight_decay=3e-4, grad_clip=5.0, channels=16, layers=8, auxiliary=True,
                  auxiliary_weight=0.4, drop_path_prob=0.1, cutout=0, label_smoothing=0.0,
                  valid_portion=0.1),
}

# (channels, height, width, classes) of datasets whose shape is fixed, so that presets and
# `nasp info` need not load them; other datasets (folder) are loaded to find out.
KNOWN_SHAPES: dict[str, tuple[int, int, int, int]] = {
    "fashion-mnist-sample": (1, 28, 28, 10),
    "fashion-mnist": (1, 28, 28, 10),
    "mnist": (1, 28, 28, 10),
    "cifar10": (3, 32, 32, 10),
    "cifar100": (3, 32, 32, 100),
    "tiny-imagenet": (3, 64, 64, 200),
}


def effective_preset(preset: str, image_side: int | None) -> str:
    """``paper`` on 64x64 (or larger) images means the Tiny ImageNet recipe."""
    if preset == "paper" and image_side is not None and image_side >= 64:
        return "tiny-imagenet"
    return preset


def preset_values(preset: str) -> dict[str, Any]:
    try:
        return dict(PRESETS[preset])
    except KeyError:
        raise NaspError(f"unknown preset {preset!r}",
                        f"use --preset with one of: {', '.join(sorted(PRESETS))}") from None


def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object of options; a train run's config.json can be reused as one (its
    bookkeeping keys are dropped)."""
    return config_layers.load_config_file(path, drop=("command", "task"))


def resolve(
    overrides: dict[str, Any] | None = None,
    config_file: str | os.PathLike | None = None,
    image_side: int | None = None,
) -> TrainConfig:
    """Defaults < preset < config file < explicit overrides (``None`` values are 'not given').

    ``image_side`` (the data's image height) lets ``paper`` switch to the Tiny ImageNet recipe
    for 64x64 data; for datasets of known shape it is looked up from the name."""
    given, from_file = option_layers(TrainConfig, overrides, config_file,
                                     drop=("command", "task"))
    data = given.get("data", from_file.get("data", TrainConfig.data))
    if image_side is None and data in KNOWN_SHAPES:
        image_side = KNOWN_SHAPES[data][1]
    preset = given.get("preset", from_file.get("preset", TrainConfig.preset))
    preset = effective_preset(preset, image_side)
    values = preset_values(preset)
    values.update(from_file)
    values.update(given)
    values["preset"] = preset
    cfg = build(TrainConfig, values)
    validate(cfg)
    return cfg


def validate(cfg: TrainConfig) -> None:
    """Reject impossible values early, naming the option to change."""
    checks = [
        (cfg.epochs >= 1, "epochs", "use --epochs 1 or more"),
        (cfg.batch_size >= 1, "batch_size", "use --batch-size 1 or more"),
        (cfg.eval_batch_size >= 1, "eval_batch_size", "use --eval-batch-size 1 or more"),
        (0.0 <= cfg.valid_portion < 1.0, "valid_portion",
         "use --valid-portion in [0, 1), e.g. 0.1; 0 validates on the test set"),
        (cfg.max_train_samples is None or cfg.max_train_samples >= 1, "max_train_samples",
         "use a positive --max-train-samples"),
        (cfg.max_steps_per_epoch is None or cfg.max_steps_per_epoch >= 1, "max_steps_per_epoch",
         "use a positive --max-steps-per-epoch"),
        (cfg.lr > 0, "lr", "use a positive --lr"),
        (cfg.lr_schedule in ("cosine", "step"), "lr_schedule", "use --lr-schedule cosine or step"),
        (0.0 < cfg.lr_gamma <= 1.0, "lr_gamma", "use --lr-gamma in (0, 1]"),
        (0.0 <= cfg.momentum < 1.0, "momentum", "use --momentum in [0, 1)"),
        (cfg.weight_decay >= 0, "weight_decay", "use --weight-decay 0 or more"),
        (cfg.grad_clip >= 0, "grad_clip", "use --grad-clip 0 (off) or more"),
        (0.0 <= cfg.label_smoothing < 1.0, "label_smoothing", "use --label-smoothing in [0, 1)"),
        (cfg.channels >= 2 and cfg.channels % 2 == 0, "channels", "use an even --channels >= 2"),
        (cfg.layers >= 3, "layers", "use --layers 3 or more (two are reduction cells)"),
        (cfg.auxiliary_weight >= 0, "auxiliary_weight", "use --auxiliary-weight 0 or more"),
        (0.0 <= cfg.drop_path_prob < 1.0, "drop_path_prob", "use --drop-path-prob in [0, 1)"),
        (cfg.cutout >= 0, "cutout", "use --cutout 0 (off) or more"),
        (cfg.crop_padding is None or cfg.crop_padding >= 0, "crop_padding",
         "use --crop-padding 0 (off) or more"),
        (cfg.log_every >= 1, "log_every", "use --log-every 1 or more"),
    ]
    check_values(cfg, checks)


def dataset_shape(data: str, root: str | None = None) -> tuple[int, int, int, int]:
    """(channels, height, width, classes) of a dataset, loading it only if its name does not
    fix the shape (e.g. ``folder``)."""
    if data in KNOWN_SHAPES:
        return KNOWN_SHAPES[data]
    from nasp.data import load_image_dataset

    ds = load_image_dataset(data, root)
    return (ds.channels, *ds.image_size, ds.num_classes)
