"""Search configuration: one flat, documented dataclass, presets, and config-file merging.

Resolution order: dataclass defaults < preset < config file (JSON) < explicit CLI options.
The resolved config is written to the run folder, so ``--resume`` needs nothing else.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from typing import Any

from nasp.config_layers import build, check_values, option_layers
from nasp.errors import NaspError


@dataclass
class SearchConfig:
    # what to search
    task: str = "cnn"                  # "cnn" (image classification) or "lm" (language model)
    strategy: str = "nasp"             # nasp, darts, darts2, pa, pa-lazy, asap, random
    space: str = "nasp-7"              # darts, nasp-7, nasp-12 (cnn); rnn, rnn-darts (lm)
    data: str = "fashion-mnist-sample"  # dataset name (see `nasp search --help`)
    data_root: str | None = None       # folder of the dataset's files, where it needs one
    preset: str = "quick"              # quick or paper
    seed: int = 0
    device: str = "auto"               # auto, cpu, cuda, cuda:1, ...
    out: str | None = None             # run folder
    # budget
    epochs: int = 50
    batch_size: int = 64
    train_portion: float = 0.5         # share of the training set used for w; the rest tunes A
    max_train_samples: int | None = None  # stratified subset of the training set (quick runs)
    max_steps_per_epoch: int | None = None
    # network weights
    lr: float = 0.025
    lr_min: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 3e-4
    grad_clip: float = 5.0
    # architecture parameters
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    lambda_params: float = 0.0         # model-size regularizer weight λ (NASP §3.3)
    darts_order: int | None = None     # 1 or 2 for --strategy darts (darts2 means 2)
    # CNN supernet
    channels: int = 16
    layers: int = 8
    stem_multiplier: int = 3
    crop_padding: int | None = None    # None: 4 for 32x32-class inputs, 2 below
    hflip: bool | None = None          # None: as the dataset says
    cutout: int = 0
    # recurrent supernet (task "lm")
    emsize: int = 300
    nhid: int = 300
    bptt: int = 35
    dropout: float = 0.75              # output
    dropouth: float = 0.25             # hidden
    dropoutx: float = 0.75             # input to the cell (x_t)
    dropouti: float = 0.2              # embedding output
    dropoute: float = 0.0              # embedding rows
    eval_batch_size: int = 10
    # strategy-specific options (ASAP temperature etc.) live here, documented by each strategy
    strategy_options: dict[str, Any] = field(default_factory=dict)
    # bookkeeping
    log_every: int = 10                # progress-bar refresh (host sync) every N steps
    checkpoint_every: int = 1          # epochs

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


PRESETS: dict[tuple[str, str], dict[str, Any]] = {
    # REFERENCE.md: the CIFAR-10 search recipe of DARTS and NASP.
    ("cnn", "paper"): dict(epochs=50, batch_size=64, lr=0.025, lr_min=0.001, momentum=0.9,
                           weight_decay=3e-4, grad_clip=5.0, arch_lr=3e-4,
                           arch_weight_decay=1e-3, channels=16, layers=8, train_portion=0.5),
    # Sized so the default search on the bundled data ends in under 10 minutes on 2 CPU cores.
    ("cnn", "quick"): dict(epochs=10, batch_size=64, lr=0.025, lr_min=0.001, channels=8,
                           layers=5, max_train_samples=3000, train_portion=0.5,
                           arch_lr=3e-3),
    # REFERENCE.md: the PTB search recipe.
    ("lm", "paper"): dict(epochs=50, batch_size=256, bptt=35, lr=20.0, lr_min=20.0,
                          momentum=0.0, grad_clip=0.25, weight_decay=5e-7, arch_lr=3e-3,
                          arch_weight_decay=1e-3, emsize=300, nhid=300, dropout=0.75,
                          dropouth=0.25, dropoutx=0.75, dropouti=0.2, dropoute=0.0,
                          eval_batch_size=10),
    # A small supernet on real PTB: 3 x 60 steps of 64 x 35 tokens; eval batch 64 keeps the
    # full-validation pass short and its batch-statistics BN steady.
    ("lm", "quick"): dict(epochs=3, batch_size=64, bptt=35, lr=20.0, lr_min=20.0,
                          momentum=0.0, grad_clip=0.25, weight_decay=5e-7, arch_lr=3e-3,
                          arch_weight_decay=1e-3, emsize=64, nhid=64, dropout=0.5,
                          dropouth=0.2, dropoutx=0.5, dropouti=0.1, dropoute=0.0,
                          max_steps_per_epoch=60, eval_batch_size=64),
}


def preset_values(task: str, preset: str) -> dict[str, Any]:
    try:
        return dict(PRESETS[(task, preset)])
    except KeyError:
        names = sorted({p for t, p in PRESETS if t == task})
        raise NaspError(f"unknown preset {preset!r} for task {task!r}",
                        f"use --preset with one of: {', '.join(names)}") from None


def resolve(
    overrides: dict[str, Any], config_file: str | os.PathLike | None = None
) -> SearchConfig:
    """Defaults < preset < config file < explicit overrides (``None`` values are 'not given')."""
    # a search run's config.json can be passed back as --config
    given, from_file = option_layers(SearchConfig, overrides, config_file, drop=("command",))
    task = given.get("task", from_file.get("task", SearchConfig.task))
    preset = given.get("preset", from_file.get("preset", SearchConfig.preset))
    values = preset_values(task, preset)
    if task == "lm":  # sensible LM defaults for the space and data when not given
        values.setdefault("space", "rnn")
        values.setdefault("data", "ptb")
    values.update(from_file)
    values.update(given)
    values["task"], values["preset"] = task, preset
    if "arch_betas" in values:
        values["arch_betas"] = tuple(values["arch_betas"])
    cfg = build(SearchConfig, values)
    validate(cfg)
    return cfg


def validate(cfg: SearchConfig) -> None:
    """Reject impossible values early, with the option to change."""
    checks = [
        (cfg.task in ("cnn", "lm"), "task", "use --task cnn or --task lm"),
        (cfg.epochs >= 1, "epochs", "use --epochs 1 or more"),
        (cfg.batch_size >= 1, "batch_size", "use --batch-size 1 or more"),
        (0 < cfg.train_portion < 1, "train_portion", "use a value strictly between 0 and 1"),
        (cfg.lr > 0, "lr", "use a positive --lr"),
        (cfg.channels >= 2 and cfg.channels % 2 == 0, "channels", "use an even --channels >= 2"),
        (cfg.layers >= 3, "layers", "use --layers 3 or more (two are reduction cells)"),
        (cfg.lambda_params >= 0, "lambda_params", "use --lambda-params 0 or more"),
    ]
    check_values(cfg, checks)
    from nasp.spaces import get_space
    from nasp.strategies import get_strategy

    space = get_space(cfg.space)
    get_strategy(cfg.strategy)
    if space.task != cfg.task:
        raise NaspError(f"space {cfg.space!r} is for task {space.task!r}, not {cfg.task!r}",
                        f"use --task {space.task} or pick a {cfg.task} space")
