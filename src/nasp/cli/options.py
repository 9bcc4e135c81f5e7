"""Argparse options generated from a config dataclass, so CLI, config files and the Python API
share one list of options with one set of defaults."""

from __future__ import annotations

import argparse
import dataclasses
import json
import typing
from typing import Any


def _parse_bool(text: str) -> bool:
    low = text.lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _converter(tp: Any):
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)) and args:
        return _converter(args[0])
    if tp is bool:
        return _parse_bool
    if tp in (int, float, str):
        return tp
    if origin is tuple:
        inner = _converter(args[0]) if args else float
        return lambda s: tuple(inner(v) for v in s.split(","))
    if origin is dict or tp is dict:
        return json.loads
    return str


def add_dataclass_options(parser: argparse.ArgumentParser, cls: type, helps: dict[str, str],
                          skip: tuple[str, ...] = ()) -> None:
    """One ``--kebab-case`` option per field; defaults stay ``None`` so that only options the
    user typed override the preset and config file. Help shows the dataclass default."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
        text = helps.get(f.name, f.name.replace("_", " "))
        parser.add_argument(f"--{f.name.replace('_', '-')}", dest=f.name, default=None,
                            type=_converter(hints[f.name]), metavar=f.name.split("_")[-1].upper(),
                            help=f"{text} (default: {default}; presets may change it)")


def given_options(args: argparse.Namespace, cls: type) -> dict[str, Any]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in vars(args).items() if k in names and v is not None}
