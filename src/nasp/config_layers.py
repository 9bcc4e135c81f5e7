"""What the search and training configurations share: reading the layers a run's options come
from (config file, explicit overrides) and turning failed value checks into one clear error.

Every config resolves ``defaults < preset < config file < explicit overrides``; only the preset
lookup differs between them, so that stays with each config and the rest lives here.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from nasp.errors import NaspError


def field_names(config_class: type) -> set[str]:
    return {f.name for f in dataclasses.fields(config_class)}


def load_config_file(path: str | os.PathLike, drop: Iterable[str] = ()) -> dict[str, Any]:
    """A JSON object of options; ``drop`` names bookkeeping keys a run folder's config.json
    carries, so that file can be passed back as ``--config``."""
    p = Path(path)
    if not p.exists():
        raise NaspError(f"config file {p} does not exist", "check the --config path")
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise NaspError(f"config file {p} is not valid JSON ({e})", "fix the file") from None
    if not isinstance(data, dict):
        raise NaspError(f"config file {p} must hold a JSON object", "fix the file")
    dropped = set(drop)
    return {k: v for k, v in data.items() if k not in dropped}


def option_layers(
    config_class: type,
    overrides: Mapping[str, Any] | None,
    config_file: str | os.PathLike | None,
    drop: Iterable[str] = (),
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(explicit overrides, config-file values); ``None`` overrides mean "not given", and an
    option name ``config_class`` lacks is an error listing the valid ones."""
    given = {k: v for k, v in (overrides or {}).items() if v is not None}
    from_file = load_config_file(config_file, drop) if config_file else {}
    names = field_names(config_class)
    unknown = (set(given) | set(from_file)) - names
    if unknown:
        raise NaspError(f"unknown option(s): {', '.join(sorted(unknown))}",
                        f"valid options: {', '.join(sorted(names))}")
    return given, from_file


def build(config_class: type, values: dict[str, Any]) -> Any:
    """``config_class(**values)``; a value of the wrong kind can only come from a config file."""
    try:
        return config_class(**values)
    except TypeError as e:
        raise NaspError(f"bad configuration: {e}", "fix the config file") from None


def check_values(cfg: Any, checks: Iterable[tuple[bool, str, str]]) -> None:
    """Raise for the first failed ``(ok, option, hint)``, naming the option and its value."""
    for ok, name, hint in checks:
        if not ok:
            raise NaspError(f"invalid {name}: {getattr(cfg, name)!r}", hint)
