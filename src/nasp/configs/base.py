"""What the three run configurations (search, CNN training, LM training) share.

Every configuration is a flat dataclass whose fields are the options of its command, each with
its default and a help text (``opt``), so the CLI, config files, the Python API and the run
folder's ``config.json`` share one list of options. Values resolve in layers,
``defaults < preset < config file < explicit options``, and are checked twice before anything
is written: by type (from the field annotations, so ``"epochs": "two"`` or ``"batch_size": 32.5``
in a JSON file fail as clearly as on the command line) and by value (``validate``).

A resumed run reads its own ``config.json``; options given beside ``--resume`` are applied only
when they cannot change what the finished epochs computed (``RESUMABLE``), and refused by name
otherwise: nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, ClassVar

from nasp.errors import NaspError

# bookkeeping keys of a run folder's config.json: not options, dropped when it is read back
BOOKKEEPING = ("command", "task_kind", "genotype_resolved")
# seeds seed numpy too, whose seeds are 32-bit: a larger one would be cut (or overflow a C type)
MAX_SEED = 2**32 - 1


def opt(default: Any, help: str, **kw: Any) -> Any:  # noqa: A002 - argparse's word
    """A config field with its help text (shown by ``--help``)."""
    if isinstance(default, dict | list):
        return dataclasses.field(default_factory=lambda: type(default)(default),
                                 metadata={"help": help, **kw})
    return dataclasses.field(default=default, metadata={"help": help, **kw})


class RunConfig:
    """Base of the run configurations (mixed into ``@dataclass`` classes)."""

    COMMAND: ClassVar[str] = ""           # the ``nasp`` subcommand that runs it
    TASK: ClassVar[str | None] = None     # a fixed task, or None when ``task`` is a field
    # options that may differ when a run is resumed: they cannot change finished epochs
    RESUMABLE: ClassVar[frozenset[str]] = frozenset({"device", "log_every", "data_root"})
    # old or alternative spellings: name -> function of the value giving the real options
    ALIASES: ClassVar[dict[str, Callable[[Any], dict[str, Any]]]] = {}
    # options that no longer exist: name -> what to do instead
    REMOVED: ClassVar[dict[str, str]] = {}

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)  # type: ignore[call-overload]

    @property
    def kind(self) -> tuple[str, str]:
        """(command, task) of the run, e.g. ("search", "cnn") or ("train", "lm")."""
        return self.COMMAND, str(self.TASK or getattr(self, "task", "cnn"))

    @classmethod
    def preset_values(cls, layered: Mapping[str, Any]) -> dict[str, Any]:
        """The preset's values, given the options set so far (task, preset, data...)."""
        return {}

    def validate(self) -> None:
        """Reject impossible values (types are already checked), naming the option."""

    def record(self) -> dict[str, Any]:
        """What config.json holds: every option plus what kind of run this is."""
        command, task = self.kind
        return {"command": command, "task": task, **self.to_dict()} if self.TASK else \
            {"command": command, **self.to_dict()}


# --- types -------------------------------------------------------------------------------------

def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is tuple:
        return f"a list of {len(typing.get_args(tp))} numbers"
    if origin is dict or tp is dict:
        return "a JSON object"
    return {int: "a whole number", float: "a number", str: "a string",
            bool: "true or false"}.get(tp, str(tp))


def coerce(name: str, value: Any, tp: Any) -> Any:
    """``value`` as the field type ``tp``, or a ``NaspError`` naming the option.

    Strict on purpose: a float where a whole number belongs (``32.5``), a string for a number
    (``"0.1"``) or a single number for a pair (``arch_betas: 0.5``) is refused rather than
    rounded or guessed. Numbers must be finite: no option of nasp takes ``inf`` or ``nan``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        if len(inner) == 1:
            return coerce(name, value, inner[0])
    ok = False
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
        if ok and not math.isfinite(value):
            raise NaspError(f"invalid {name}: {value!r}", f"--{_flag(name)} must be finite")
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif origin is tuple:
        inner = typing.get_args(tp)
        if isinstance(value, list | tuple) and len(value) == len(inner):
            return tuple(coerce(name, v, t) for v, t in zip(value, inner, strict=True))
    elif origin is dict or tp is dict:
        ok = isinstance(value, dict)
    else:
        ok = True
    if not ok:
        raise NaspError(f"invalid {name}: {value!r} is not {_type_name(tp)}",
                        f"give --{_flag(name)} {_type_name(tp)}")
    return value


def _flag(name: str) -> str:
    return name.replace("_", "-")


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def field_names(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls)}


# --- layers ------------------------------------------------------------------------------------

def load_config_file(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object of options; a run folder's config.json works (bookkeeping keys dropped)."""
    from nasp.files import input_file

    p = input_file(path, "--config", "config file")
    try:
        data = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NaspError(f"config file {p} is not valid JSON ({e})", "fix the file") from None
    except OSError as e:
        raise NaspError(f"cannot read config file {p}: {e.strerror or e}",
                        "check the --config path") from None
    if not isinstance(data, dict):
        raise NaspError(f"config file {p} must hold a JSON object", "fix the file")
    return {k: v for k, v in data.items() if k not in BOOKKEEPING}


def _normalise(cls: type[RunConfig], values: Mapping[str, Any], source: str,
               file: bool = False) -> dict[str, Any]:
    """Drop ``None`` (not given), expand aliases, refuse removed and unknown names.

    In a ``file`` (a config file, a run's config.json) ``null`` is a value the file states, not
    an option left out: kept for options that take it (``"max_train_samples": null``: all of
    them, even where the preset sets a number), refused for the others rather than silently
    replaced by the preset's value."""
    out: dict[str, Any] = {}
    names = field_names(cls)
    if file:
        hints = _hints(cls)
        for key, value in values.items():
            if value is None and key not in cls.REMOVED and (
                    key in cls.ALIASES or (key in names and not _takes_none(hints[key]))):
                raise NaspError(f"invalid {key}: null ({source})",
                                f"give {key} a value there, or leave it out of the file")
        for key, value in values.items():
            if value is None and key in names:
                out[key] = None
    for key, value in values.items():
        if key in cls.REMOVED:
            raise NaspError(f"option {key} ({source}) no longer exists", cls.REMOVED[key])
        if key in cls.ALIASES:
            if value is not None:
                for k, v in cls.ALIASES[key](value).items():
                    if k in out and out[k] != v:
                        raise NaspError(f"{key} and {k} ({source}) contradict each other",
                                        f"give only one of --{_flag(key)}, --{_flag(k)}")
                    out[k] = v
            continue
        if key not in names:
            if cls.TASK and key == "task" and value == cls.TASK:
                continue  # a train run's config.json names its task
            raise NaspError(f"unknown option {key!r} ({source})",
                            f"valid options: {', '.join(sorted(names))}")
        if value is not None:
            if key in out and out[key] != value:
                raise NaspError(f"{key} is given twice with different values ({source})",
                                f"give --{_flag(key)} once")
            out[key] = value
    return out


def _takes_none(tp: Any) -> bool:
    return typing.get_origin(tp) in (typing.Union, types.UnionType) \
        and type(None) in typing.get_args(tp)


def check_types(cls: type[RunConfig], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every value of one layer (a config file, a saved config.json, the command line) checked
    against its field's type, before the layers are merged: a later layer overriding a value
    must not hide that the file holding it is wrong (``"epochs": "two"`` with ``--epochs 1``
    would otherwise run, and fail the next time the file is used alone)."""
    hints = _hints(cls)
    return {k: coerce(k, v, hints[k]) for k, v in values.items()}


def build(cls: type[RunConfig], values: Mapping[str, Any]) -> Any:
    """``cls(**values)`` after every value is checked against its field's type."""
    hints = _hints(cls)
    typed = {k: coerce(k, v, hints[k]) for k, v in values.items()}
    cfg = cls(**typed)
    cfg.validate()
    return cfg


def resolve(cls: type[RunConfig], overrides: Mapping[str, Any] | None = None,
            config_file: str | os.PathLike | None = None) -> Any:
    """Defaults < preset < config file < explicit overrides (``None`` values: not given)."""
    given = check_types(cls, _normalise(cls, overrides or {}, "command line"))
    from_file = check_types(cls, _normalise(cls, load_config_file(config_file),
                                            str(config_file), file=True)) if config_file else {}
    layered = {**from_file, **given}
    preset = cls.preset_values(layered)
    values = {**preset, **layered}
    if "preset" in preset:  # a preset may stand for another (paper on 64x64 data)
        values["preset"] = preset["preset"]
    return build(cls, values)


def check_values(cfg: Any, checks: Iterable[tuple[bool, str, str]]) -> None:
    """Raise for the first failed ``(ok, option, hint)``, naming the option and its value."""
    for ok, name, hint in checks:
        if not ok:
            raise NaspError(f"invalid {name}: {getattr(cfg, name)!r}", hint)


def common_checks(cfg: Any) -> list[tuple[bool, str, str]]:
    """Checks of the options the configurations share, so every command checks them alike."""
    have = field_names(type(cfg))
    rules: dict[str, tuple[Callable[[Any], bool], str]] = {
        "epochs": (lambda v: v >= 1, "use --epochs 1 or more"),
        "batch_size": (lambda v: v >= 1, "use --batch-size 1 or more"),
        "eval_batch_size": (lambda v: v >= 1, "use --eval-batch-size 1 or more"),
        "max_train_samples": (lambda v: v is None or v >= 1,
                              "use --max-train-samples 1 or more (leave it out for all)"),
        "max_steps_per_epoch": (lambda v: v is None or v >= 1,
                                "use --max-steps-per-epoch 1 or more (leave it out for all)"),
        "lr": (lambda v: v > 0, "use a positive --lr"),
        "momentum": (lambda v: 0 <= v < 1, "use --momentum in [0, 1)"),
        "weight_decay": (lambda v: v >= 0, "use --weight-decay 0 or more"),
        "grad_clip": (lambda v: v >= 0, "use --grad-clip 0 (off) or more"),
        "log_every": (lambda v: v >= 1, "use --log-every 1 or more"),
        "seed": (lambda v: 0 <= v <= MAX_SEED, f"use --seed between 0 and {MAX_SEED}"),
        "out": (lambda v: v is None or v != "",
                "give --out a folder, or leave it out for the default folder"),
        "data_root": (lambda v: v is None or (v != "" and not os.path.isfile(v)),
                      "give --data-root the dataset's folder"),
        "cost_table": (lambda v: v is None or v != "",
                       "give --cost-table a file made by nasp profile"),
        "arch": (lambda v: v is None or v != "",
                 "give --arch the run folder of a search of your own model"),
        "genotype": (lambda v: v != "", "give --genotype a published name, a genotype.json or "
                     "a search run folder"),
        "channels": (lambda v: v >= 2 and v % 2 == 0, "use an even --channels >= 2"),
        "layers": (lambda v: v >= 3, "use --layers 3 or more (two are reduction cells)"),
        "cutout": (lambda v: v >= 0, "use --cutout 0 (off) or more"),
        "crop_padding": (lambda v: v is None or v >= 0, "use --crop-padding 0 (off) or more"),
        "bptt": (lambda v: v >= 2, "use --bptt 2 or more"),
        "nhid": (lambda v: v >= 1, "use --nhid 1 or more"),
    }
    for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
        rules[name] = (lambda v: 0 <= v < 1, f"use --{name} in [0, 1)")
    return [(rule(getattr(cfg, name)), name, hint)
            for name, (rule, hint) in rules.items() if name in have]


# --- run folders -------------------------------------------------------------------------------

def read_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """A run folder's config.json, with a clear error when it is not a run folder."""
    p = Path(run_dir)
    if p.exists() and not p.is_dir():
        raise NaspError(f"{p} is a file, not a run folder",
                        "give --resume the folder of a nasp search or train run")
    if not p.is_dir():
        raise NaspError(f"run folder {p} does not exist", "check the --resume path")
    path = p / "config.json"
    if not path.is_file():
        raise NaspError(f"{p} holds no config.json, so it is not a nasp run folder",
                        "pass a folder written by nasp search or nasp train")
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NaspError(f"{path} is not valid JSON ({e})",
                        "the file is damaged; start the run again") from None
    if not isinstance(data, dict):
        raise NaspError(f"{path} does not hold a JSON object", "start the run again")
    return data


def run_kind(saved: Mapping[str, Any]) -> tuple[str, str]:
    """(command, task) recorded in a config.json."""
    return str(saved.get("command", "search")), str(saved.get("task", "cnn"))


def resume_command(kind: tuple[str, str], run_dir: str | os.PathLike) -> str:
    command, task = kind
    extra = " --task lm" if command == "train" and task == "lm" else ""
    return f"nasp {command}{extra} --resume {run_dir}"


def resolve_resume(cls: type[RunConfig], run_dir: str | os.PathLike,
                   overrides: Mapping[str, Any] | None = None, *,
                   config_file: str | os.PathLike | None = None) -> Any:
    """The config of the run in ``run_dir`` with the options safe to change applied.

    Refuses a folder of another kind (naming the command that resumes it), an option that would
    change finished epochs (naming it), and a damaged or foreign config.json."""
    saved = read_run_config(run_dir)
    kind = run_kind(saved)
    wanted = (cls.COMMAND, cls.TASK) if cls.TASK else None
    if kind[0] != cls.COMMAND or (wanted is not None and kind != wanted):
        raise NaspError(f"{run_dir} is a `nasp {kind[0]}` run ({kind[1]})",
                        f"resume it with `{resume_command(kind, run_dir)}`")
    if config_file:
        raise NaspError("--config cannot be combined with --resume",
                        "a resumed run uses its own config.json; pass only --resume RUN")
    given = check_types(cls, _normalise(cls, overrides or {}, "command line"))
    values = check_types(cls, _normalise(
        cls, {k: v for k, v in saved.items() if k not in BOOKKEEPING
              and not (k == "task" and cls.TASK)}, str(Path(run_dir) / "config.json"),
        file=True))
    changed = sorted(k for k, v in given.items() if k != "out" and values.get(k) != v
                     and k not in cls.RESUMABLE)
    if changed:
        allowed = ", ".join("--" + _flag(k) for k in sorted(cls.RESUMABLE))
        raise NaspError(f"{', '.join('--' + _flag(k) for k in changed)} cannot change when "
                        "resuming (the finished epochs were computed with the saved value)",
                        f"pass only --resume RUN, optionally with {allowed}; or start a new run")
    values.update({k: v for k, v in given.items() if k in cls.RESUMABLE})
    values["out"] = str(run_dir)
    return build(cls, values)
