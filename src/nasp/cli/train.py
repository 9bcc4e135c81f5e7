"""``nasp train``: train a genotype from scratch; ``--task cnn`` (default) or ``--task lm``.

The two tasks take different options, so this module only reads ``--task`` and hands the
parser to ``nasp.cli.train_cnn`` or ``nasp.cli.train_lm``.
"""

from __future__ import annotations

import argparse
import importlib

MODULES = {"cnn": "nasp.cli.train_cnn", "lm": "nasp.cli.train_lm"}


def _task_from_argv() -> str:
    from nasp.cli import CURRENT_ARGV

    argv = CURRENT_ARGV
    for i, a in enumerate(argv):
        if a == "--task" and i + 1 < len(argv):
            return argv[i + 1]
        if a.startswith("--task="):
            return a.split("=", 1)[1]
    return "cnn"


def add_arguments(parser: argparse.ArgumentParser, task: str | None = None) -> None:
    task = task or _task_from_argv()
    parser.add_argument("--task", choices=sorted(MODULES), default="cnn",
                        help="cnn: image classifier from a CNN genotype; lm: language model "
                        "from a recurrent genotype (default: cnn)")
    module = importlib.import_module(MODULES.get(task, MODULES["cnn"]))
    module.add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    return importlib.import_module(MODULES[args.task]).run(args)
