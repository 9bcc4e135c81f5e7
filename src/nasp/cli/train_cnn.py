"""``nasp train --task cnn``: train a CNN genotype's evaluation network from scratch.

Every ``TrainConfig`` field is an option (``--kebab-case``). Options left out take the value of
the config file (``--config``), else of the preset, else the default shown in ``--help``.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasp.cli.options import add_dataclass_options, given_options
from nasp.errors import NaspError
from nasp.train_config import PRESETS, TrainConfig, load_config_file

HELP: dict[str, str] = {
    "genotype": "genotype to train: a published name (DARTS_V1, DARTS_V2, NASP_12), a "
                "genotype.json, or a search run folder",
    "data": "dataset: fashion-mnist-sample (bundled), fashion-mnist, mnist, cifar10, cifar100, "
            "tiny-imagenet, folder",
    "data_root": "folder holding the dataset's files (all datasets but the bundled sample)",
    "preset": f"preset: {', '.join(PRESETS)} (paper on 64x64 data means tiny-imagenet)",
    "seed": "random seed of initialisation, data order and augmentation",
    "device": "auto, cpu, cuda or cuda:N",
    "out": "run folder (default runs/train-<genotype>-<data>-s<seed>)",
    "epochs": "training epochs",
    "batch_size": "training batch size",
    "eval_batch_size": "batch size of validation and test passes",
    "valid_portion": "share of the training set held out to choose best.pt; 0 trains on all "
                     "of it and validates on the test set",
    "max_train_samples": "train on a stratified subset of this many images",
    "max_steps_per_epoch": "cap optimizer steps per epoch (smoke tests)",
    "lr": "initial learning rate of SGD",
    "lr_schedule": "cosine (to 0 at the last epoch) or step (times --lr-gamma every epoch)",
    "lr_gamma": "per-epoch factor of the step schedule",
    "momentum": "SGD momentum",
    "weight_decay": "L2 weight decay",
    "grad_clip": "clip the gradient norm to this; 0 turns clipping off",
    "label_smoothing": "label smoothing of the training loss",
    "channels": "channels C of the first cells (even)",
    "layers": "number of cells; reduction cells at layers//3 and 2*layers//3",
    "auxiliary": "auxiliary classifier after cell 2*layers//3 (training only)",
    "auxiliary_weight": "weight of the auxiliary loss",
    "drop_path_prob": "drop-path probability reached at the last epoch (linear from 0)",
    "cutout": "cutout square side in pixels; 0 turns it off",
    "crop_padding": "random-crop padding in pixels (default: 4 for >=32 px images, else 2)",
    "hflip": "random horizontal flips (default: as the dataset says)",
    "amp": "bf16 autocast (default: on for CUDA)",
    "channels_last": "NHWC memory format (default: on for CUDA)",
    "log_every": "progress-bar refresh (one host-device sync) every N steps",
}

# options that may change when a run is resumed (they do not affect its results)
RESUME_OPTIONS = {"device", "log_every", "data_root"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    # the dataclass defaults are the paper recipe; say where the default preset differs
    quick = PRESETS["quick"]
    helps = {name: (f"{text} (quick preset: {quick[name]})"
                    if name in quick and quick[name] != getattr(TrainConfig, name) else text)
             for name, text in HELP.items()}
    add_dataclass_options(parser, TrainConfig, helps)
    parser.add_argument("--config", metavar="JSON",
                        help="JSON file of options (a run's config.json works); command-line "
                        "options override it")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue the run in this folder from its last epoch")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in the --out folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> tuple[TrainConfig, Any]:
    """The resolved config (and the dataset, when it had to be loaded to pick the preset)."""
    from nasp.train_config import KNOWN_SHAPES, resolve

    overrides = given_options(args, TrainConfig)
    if args.resume:
        fixed = sorted(k for k in overrides if k not in RESUME_OPTIONS)
        if fixed or args.config:
            shown = ", ".join("--" + k.replace("_", "-") for k in fixed) or "--config"
            raise NaspError(f"{shown} cannot change when resuming",
                            "pass only --resume RUN (with --device, --log-every or "
                            "--data-root), or start a new run")
        run = Path(args.resume)
        if not (run / "config.json").exists():
            raise NaspError(f"{run} holds no config.json",
                            "resume a folder written by `nasp train --task cnn`")
        saved = load_config_file(run / "config.json")
        saved.update(overrides)
        saved["out"] = str(run)
        cfg = TrainConfig(**saved)
        return cfg, None
    dataset = None
    merged = load_config_file(args.config) if args.config else {}
    merged.update(overrides)
    data = merged.get("data", TrainConfig.data)
    image_side = None
    if data not in KNOWN_SHAPES and merged.get("preset") == "paper":
        # the shape decides between the CIFAR and Tiny ImageNet recipes: load the data once
        from nasp.data import load_image_dataset

        dataset = load_image_dataset(data, merged.get("data_root"))
        image_side = dataset.image_size[0]
    return resolve(overrides, args.config, image_side=image_side), dataset


def run(args: argparse.Namespace) -> int:
    from nasp.loops.train_cnn import train

    cfg, dataset = config_from_args(args)
    train(cfg, resume=bool(args.resume), overwrite=args.overwrite,
          progress=not args.no_progress, dataset=dataset)
    return 0
