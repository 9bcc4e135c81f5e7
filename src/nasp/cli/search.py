"""``nasp search``: find a cell architecture (NASP by default) and write a run folder."""

from __future__ import annotations

import argparse

from nasp.cli.options import add_dataclass_options, given_options
from nasp.config import SearchConfig

HELP = {
    "task": "cnn (image classification) or lm (language model)",
    "strategy": "nasp, darts (1st order), darts2 (2nd order), pa, pa-lazy, asap, random",
    "space": "search space: darts, nasp-7, nasp-12 (cnn); rnn, rnn-darts (lm)",
    "data": "dataset: fashion-mnist-sample (bundled), fashion-mnist, mnist, cifar10, cifar100, "
            "folder, tiny-imagenet; ptb, wikitext-2 (lm)",
    "data_root": "folder holding the dataset's files",
    "preset": "quick (minutes on a CPU) or paper (the published recipe)",
    "device": "auto, cpu, cuda, cuda:N",
    "out": "run folder (default: runs/<strategy>-<space>-<data>-s<seed>)",
    "epochs": "search epochs",
    "batch_size": "batch size of both the weight and the architecture step",
    "train_portion": "share of the training set that trains weights; the rest trains the "
                     "architecture",
    "max_train_samples": "use a stratified subset of this many training images",
    "max_steps_per_epoch": "cap the iterations per epoch",
    "lr": "weight learning rate (SGD, cosine schedule)",
    "lr_min": "final weight learning rate",
    "arch_lr": "architecture learning rate (Adam)",
    "arch_betas": "Adam betas of the architecture step, e.g. 0.5,0.999",
    "lambda_params": "model-size regularizer weight λ (NASP §3.3)",
    "darts_order": "1 or 2 with --strategy darts",
    "channels": "initial channels of the search network",
    "layers": "cells of the search network",
    "cutout": "cutout length in pixels (0: off)",
    "strategy_options": "JSON object of strategy-specific options, e.g. '{\"t0\": 5}'",
    "log_every": "steps between progress updates (each one reads values off the device)",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", help="JSON file of options (CLI options override it)")
    parser.add_argument("--resume", metavar="RUN", help="continue the search in run folder RUN")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in --out")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_dataclass_options(parser, SearchConfig, HELP, skip=("checkpoint_every",))


def run(args: argparse.Namespace) -> int:
    from nasp.api import resume, search

    if args.resume:
        res = resume(args.resume, progress=not args.quiet)
    else:
        res = search(config=args.config, overwrite=args.overwrite, progress=not args.quiet,
                     **given_options(args, SearchConfig))
    print(f"genotype: {res.genotype}")
    if res.run_dir is not None:
        print(f"run folder: {res.run_dir}  (genotype.json, metrics.jsonl, arch.jsonl, "
              "checkpoint.pt, result.json)")
    return 0
