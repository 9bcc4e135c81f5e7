"""``nasp train``: train a genotype's evaluation network from scratch; ``--task cnn`` (default)
or ``--task lm``. The two tasks take different options, so ``--task`` (or the task of the run
folder given to ``--resume``) is read first and decides which options exist."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from nasp.cli.options import (
    add_config_options,
    given_options,
    path_text,
    refuse_contradictions,
)
from nasp.configs import LMTrainConfig, TrainConfig

CONFIGS = {"cnn": TrainConfig, "lm": LMTrainConfig}


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _task_from_argv() -> str:
    """``--task``, else the task of the run folder given to ``--resume``, else cnn: a user
    resuming ``nasp train --resume RUN`` should not have to repeat ``--task lm``."""
    from nasp.cli import CURRENT_ARGV

    task = _option(CURRENT_ARGV, "--task")
    if task is not None:
        return task
    resume = _option(CURRENT_ARGV, "--resume")
    if resume is not None:
        try:
            saved = json.loads((Path(resume) / "config.json").read_text())
        except (OSError, ValueError):
            saved = {}  # resuming reports a missing or broken folder itself
        if isinstance(saved, dict) and saved.get("task") in CONFIGS:
            return str(saved["task"])
    return "cnn"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    task = _task_from_argv()
    parser.add_argument("--task", choices=sorted(CONFIGS), default=task,
                        help="cnn: image classifier from a CNN genotype; lm: language model "
                        "from a recurrent genotype (default: cnn)")
    parser.add_argument("--config", metavar="JSON", type=path_text,
                        help="JSON file of options (a run's config.json works); command-line "
                        "options override it")
    parser.add_argument("--resume", metavar="RUN", type=path_text,
                        help="continue the run in this folder from its last epoch (options that "
                        "cannot change finished epochs may be given with it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in the --out folder")
    parser.add_argument("--quiet", action="store_true",
                        help="no progress bars (the same flag as search and compare)")
    # the old spelling fails naming the new one, rather than being a second way to say it
    parser.add_argument("--no-progress", dest="removed_no_progress", action="store_true",
                        help=argparse.SUPPRESS)
    add_config_options(parser, CONFIGS.get(task, TrainConfig))


def run(args: argparse.Namespace) -> int:
    from nasp import api
    from nasp.errors import NaspError

    if args.removed_no_progress:
        raise NaspError("option --no-progress no longer exists",
                        "use --quiet, as with nasp search and nasp compare")
    options = given_options(args, CONFIGS[args.task])
    refuse_contradictions(args)
    if args.resume:
        api.resume(args.resume, progress=not args.quiet, command="train",
                   config=args.config, **options)
    else:
        api.train(args.task, config=args.config, overwrite=args.overwrite,
                  progress=not args.quiet, **options)
    return 0
