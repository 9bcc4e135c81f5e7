"""Command-line options generated from a run configuration, so the CLI, config files and the
Python API share one list of options with one set of defaults and help texts.

Every field becomes ``--kebab-case``; booleans are spelled one way everywhere,
``--flag`` / ``--no-flag``. Defaults stay ``None`` on the command line so that only options a
user typed override the config file and the preset.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import typing
from pathlib import Path
from typing import Any, NoReturn

from nasp.configs.base import RunConfig
from nasp.errors import NaspError


class ArgumentParser(argparse.ArgumentParser):
    """argparse with nasp's one-line errors: ``error: what (how to fix)``, exit status 2.

    Options are spelled out: no abbreviations (``compare --seed 1`` is not ``--seeds 1``), so
    an option added later cannot change what an old command line means."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        print(f"error: {message} (see `{self.prog} --help`)", file=sys.stderr)
        sys.exit(2)


def path_text(text: str) -> str:
    """argparse type of a path: an empty one (``--out ''``) names nothing, yet would silently
    mean the current folder, or be taken for an option not given."""
    if text == "":
        raise argparse.ArgumentTypeError("an empty path names no file or folder")
    return text


def path_arg(text: str) -> Path:
    """``path_text`` as a ``Path``."""
    return Path(path_text(text))


def _json_object(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None


def _pair(inner: Any):
    def parse(text: str) -> tuple:
        try:
            return tuple(inner(v) for v in text.split(","))
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}"
                                             ) from None
    return parse


def _base(tp: Any) -> Any:
    """``int | None`` -> int."""
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType) \
            and len(args) == 1:
        return args[0]
    return tp


def _add(parser: argparse.ArgumentParser, name: str, tp: Any, text: str, **kw: Any) -> None:
    flag = "--" + name.replace("_", "-")
    tp = _base(tp)
    if tp is bool:
        parser.add_argument(flag, dest=name, action=argparse.BooleanOptionalAction,
                            default=None, help=text, **kw)
        return
    if typing.get_origin(tp) is tuple:
        conv: Any = _pair(typing.get_args(tp)[0])
    elif typing.get_origin(tp) is dict or tp is dict:
        conv = _json_object
    else:
        conv = tp if tp in (int, float, str) else str
    parser.add_argument(flag, dest=name, type=conv, default=None, help=text,
                        metavar=name.split("_")[-1].upper(), **kw)


def add_config_options(parser: argparse.ArgumentParser, cls: type[RunConfig],
                       skip: tuple[str, ...] = ()) -> None:
    """One option per field of ``cls`` (help: its text and default), its aliases, and hidden
    options for removed names so that they fail with a message saying what to use instead."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        shown = "none" if default is None else default
        text = f"{f.metadata.get('help', f.name.replace('_', ' '))} (default: {shown}; " \
               "presets may change it)"
        # argparse %-formats help texts: a literal % ("5% of the time") must be doubled
        text = text.replace("%", "%%")
        _add(parser, f.name, hints[f.name], text)
    if "lambda_params" in cls.ALIASES and "lambda_params" not in skip:
        _add(parser, "lambda_params", float, "model-size regularizer weight λ (NASP §3.3): "
             "--cost params --lambda-cost λ")
    for name in cls.REMOVED:
        _add(parser, name, str, argparse.SUPPRESS)


def given_options(args: argparse.Namespace, cls: type[RunConfig]) -> dict[str, Any]:
    """The options of ``cls`` (its aliases and removed names included) the user typed."""
    names = {f.name for f in dataclasses.fields(cls)} | set(cls.ALIASES) | set(cls.REMOVED)  # type: ignore[arg-type]
    return {k: v for k, v in vars(args).items() if k in names and v is not None}


def refuse_contradictions(args: argparse.Namespace) -> None:
    """--resume, --overwrite and --continue each say what to do with the run folder; two of
    them at once would leave one silently ignored."""
    given = [flag for flag, on in (("--resume", getattr(args, "resume", None) is not None),
                                   ("--overwrite", args.overwrite),
                                   ("--continue", getattr(args, "continue_run", False))) if on]
    if len(given) > 1:
        raise NaspError(f"{' and '.join(given)} cannot be given together",
                        "give either --resume RUN (continue that run), --overwrite (replace "
                        "the run in --out) or --continue (run it at most once)")
