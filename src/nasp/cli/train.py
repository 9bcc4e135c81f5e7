"""``nasp train``: train a genotype from scratch; ``--task cnn`` (default) or ``--task lm``.

The two tasks take different options, so this module only reads ``--task`` and hands the
parser to ``nasp.cli.train_cnn`` or ``nasp.cli.train_lm``.
"""

from __future__ import annotations

import argparse
import importlib
import json
from pathlib import Path

MODULES = {"cnn": "nasp.cli.train_cnn", "lm": "nasp.cli.train_lm"}


def _option(argv: list[str], name: str) -> str | None:
    for i, a in enumerate(argv):
        if a == name and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith(name + "="):
            return a.split("=", 1)[1]
    return None


def _task_from_argv() -> str:
    """``--task``, else the task a resumed run folder was trained for, else cnn: a user
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
            saved = {}  # the train module reports a missing or broken folder itself
        if isinstance(saved, dict) and saved.get("task") in MODULES:
            return str(saved["task"])
    return "cnn"


def add_arguments(parser: argparse.ArgumentParser, task: str | None = None) -> None:
    task = task or _task_from_argv()
    parser.add_argument("--task", choices=sorted(MODULES), default=task,
                        help="cnn: image classifier from a CNN genotype; lm: language model "
                        "from a recurrent genotype (default: cnn)")
    module = importlib.import_module(MODULES.get(task, MODULES["cnn"]))
    module.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(MODULES[args.task]).run(args)
