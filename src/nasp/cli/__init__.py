"""The ``nasp`` command line: one module per subcommand, each with ``add_arguments`` and ``run``.

Mistakes a user can fix surface as ``error: <what> (<how to fix>)`` with exit status 2; any
other exception is a bug and shows its traceback. ``--debug`` shows tracebacks for both.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from nasp.cli.options import ArgumentParser
from nasp.errors import NaspError

# subcommand -> module; modules are imported only when their subcommand runs (fast --help).
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "search": ("nasp.cli.search", "search for a cell architecture"),
    "train": ("nasp.cli.train", "train a genotype from scratch (CNN or language model)"),
    "info": ("nasp.cli.info", "parameter count and multiply-adds of a genotype's network"),
    "compare": ("nasp.cli.compare", "run several strategies and seeds, write a comparison table"),
    "plot": ("nasp.cli.plot", "plots from run folders"),
    "draw": ("nasp.cli.draw", "draw the cells of a genotype"),
    "report": ("nasp.cli.report", "one offline HTML page of runs"),
    "export": ("nasp.cli.export", "a trained network as ONNX, torch.export (.pt2) or safetensors"),
    "profile": ("nasp.cli.profile", "cost table: latency, parameters, multiply-adds of every op"),
    "costs": ("nasp.cli.costs", "fit a latency table from measured networks (nasp costs fit)"),
}


# the argv being parsed: subcommands whose options depend on an earlier option (``nasp train
# --task lm``) read it while they add their arguments.
CURRENT_ARGV: list[str] = []


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="nasp", description="Differentiable neural architecture search by proximal "
        "iterations (NASP), with DARTS, PA, ASAP and random-search baselines.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, summary) in SUBCOMMANDS.items():
        p = sub.add_parser(name, help=summary, description=summary)
        p.add_argument("--debug", action="store_true", help="show tracebacks of errors")
        p.set_defaults(_module=module)
        try:
            importlib.import_module(module).add_arguments(p)
        except ModuleNotFoundError as e:
            if e.name != module:
                raise
            p.set_defaults(_missing=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:
        # the main job: a NASP search on the bundled data with the quick preset
        argv = ["search"]
    CURRENT_ARGV[:] = argv
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # --help, or a bad option already reported in one line
        return int(e.code or 0)
    if getattr(args, "_missing", False):
        parser.error(f"subcommand {args.command!r} is not available in this build")
    opened = _opened_run_folders()  # those of earlier calls in this process are not this one's
    try:
        return int(importlib.import_module(args._module).run(args) or 0)
    except NaspError as e:
        if args.debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"interrupted; {_how_to_continue(args.command, _opened_run_folders()[len(opened):])}",
              file=sys.stderr)
        return 130


def _opened_run_folders() -> list:
    """The run folders this process opened to write (``nasp.run_folder`` is loaded once one
    was; not imported here, it brings torch)."""
    run_folder = sys.modules.get("nasp.run_folder")
    return list(run_folder.OPENED) if run_folder is not None else []


def _how_to_continue(command: str, opened: list) -> str:
    """What continues an interrupted command: for a search or training run, the command that
    resumes the very folder it was writing."""
    if command == "compare":
        return "run the same `nasp compare` command again to continue"
    if command not in ("search", "train"):
        return "run the command again"
    if not opened:
        return "nothing was written; run the command again"
    folder = opened[-1]
    if not (folder / "checkpoint.pt").is_file():
        return (f"no epoch of {folder} finished, so there is nothing to resume; run the "
                "command again with --overwrite")
    return f"continue with `nasp {command} --resume {folder}`"


if __name__ == "__main__":
    sys.exit(main())
