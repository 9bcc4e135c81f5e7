"""A user's own network as a search space: its ``Choice`` and ``InputChoice`` modules, by label.

Each label becomes a cell type of the one kind strategies already search (``CellSpec``):

* a ``Choice`` label: one edge of a one-node cell whose ops are its candidate names, the edge
  always kept (``keep=None``), so the discrete rule picks one candidate;
* an ``InputChoice(n, k)`` label: one node with ``n`` incoming edges whose ops are ``pass`` and
  ``none``, keeping ``k``: the rule that keeps a cell node's two strongest edges keeps its k
  strongest inputs (``none`` never wins where edges are chosen: ``CellSpec.final_ops``).

So every strategy, the discretisation, checkpoints and records work on a model unchanged. The
record of an architecture is ``ModelArch``: label -> candidate name (a Choice) or sorted input
indices (an InputChoice), written to a run folder as arch.json.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from torch import nn

from nasp.errors import NaspError
from nasp.files import read_json
from nasp.spaces.base import SearchSpace

MODEL_FAMILY = "model"
INPUT_OPS = ("pass", "none")  # the ops of an InputChoice's edges
ARCH_FILE = "arch.json"
ArchValue = str | list[int]


class ModelArch(Mapping[str, ArchValue]):
    """A user model's discrete architecture: label -> candidate name (``Choice``) or sorted list
    of input indices (``InputChoice``). Plain, printable and JSON-round-tripping, like a
    genotype; ``dict(arch)`` is the plain dict."""

    FILE = ARCH_FILE
    KEY = "arch"  # its key in result.json
    family = MODEL_FAMILY
    task = MODEL_FAMILY

    def __init__(self, values: Mapping[str, ArchValue]) -> None:
        self._values = {str(k): (sorted(int(i) for i in v) if isinstance(v, list | tuple)
                                 else str(v)) for k, v in values.items()}

    def __getitem__(self, label: str) -> ArchValue:
        return self._values[label]

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Mapping):
            return self.to_dict() == {k: (sorted(v) if isinstance(v, list | tuple) else v)
                                      for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def to_dict(self) -> dict[str, ArchValue]:
        return {k: list(v) if isinstance(v, list) else v for k, v in self._values.items()}

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """arch.json's text: one label per line, plain JSON."""
        items = list(self._values.items())
        lines = [f"  {json.dumps(k)}: {json.dumps(v)}{',' if i < len(items) - 1 else ''}"
                 for i, (k, v) in enumerate(items)]
        text = "{\n" + "\n".join(lines) + "\n}\n" if lines else "{}\n"
        if path is not None:
            Path(path).write_text(text)
        return text

    def __str__(self) -> str:
        return "{" + ", ".join(f"{k}: {v}" for k, v in self._values.items()) + "}"

    __repr__ = __str__


@dataclass(frozen=True, eq=False)
class ModelSpace(SearchSpace):
    """The space of a model's choices (``nasp.supernet.choices.attach`` builds it); ``state``
    is the model's ``ChoiceState``, what its choices run for the current call (opaque here)."""

    kinds: dict[str, str] = field(default_factory=dict)  # label -> "Choice" / "InputChoice"
    state: Any = None

    # --- records (the hooks strategies call through ``strategies.discretize``) ----------------
    def record(self, selections: Mapping[str, Sequence[int]]) -> ModelArch:
        """The arch of a selection (one op per kept edge per label)."""
        out: dict[str, ArchValue] = {}
        for label, cell in self.cells.items():
            sel = selections[label]
            if self.kinds[label] == "Choice":
                out[label] = cell.ops[sel[0]]
            else:
                out[label] = [j for j, k in enumerate(sel) if k >= 0]
        return ModelArch(out)

    def record_edges(self, arch: Mapping[str, Any]) -> dict[str, list[tuple[int, int]]]:
        """Per label, the (edge, op) pairs an arch runs; a ``NaspError`` names a missing,
        unknown or extra label, an unknown candidate or a wrong list of inputs."""
        if not isinstance(arch, Mapping):
            raise NaspError(f"an architecture is a dict label -> choice, not a "
                            f"{type(arch).__name__}", "pass e.g. {'block1': 'k3', 'skip': [0, 2]}")
        missing = [label for label in self.cells if label not in arch]
        extra = [label for label in arch if label not in self.cells]
        if extra:
            raise NaspError(f"the architecture names label(s) the model does not have: "
                            f"{', '.join(map(repr, extra))}",
                            f"the model's labels are: {', '.join(self.cells)}")
        if missing:
            raise NaspError(f"the architecture has no choice for label(s) "
                            f"{', '.join(map(repr, missing))}",
                            "give every label of the model a choice (a run's arch.json has "
                            "them all)")
        out = {}
        for label, cell in self.cells.items():
            value = arch[label]
            if self.kinds[label] == "Choice":
                if not isinstance(value, str) or value not in cell.ops:
                    raise NaspError(f"{value!r} is not a candidate of Choice {label!r}",
                                    f"use one of: {', '.join(cell.ops)}")
                out[label] = [(0, cell.ops.index(value))]
                continue
            n, k = cell.inputs, cell.keep
            ok = (isinstance(value, list | tuple) and all(
                isinstance(i, int) and not isinstance(i, bool) for i in value))
            if not ok or len(set(value)) != len(value) or len(value) != k or \
                    not all(0 <= i < n for i in value):
                raise NaspError(f"{value!r} is no choice of InputChoice {label!r}",
                                f"give a list of {k} different input indices in 0..{n - 1}")
            out[label] = [(int(j), 0) for j in sorted(value)]
        return out

    def parse_record(self, value: Any) -> ModelArch:
        """An arch from a dict, a ``ModelArch``, an arch.json path or a run folder."""
        if isinstance(value, str | os.PathLike):
            value = read_arch(value)
        self.record_edges(value)
        return value if isinstance(value, ModelArch) else ModelArch(value)

    def signature(self) -> dict[str, list]:
        """What makes two models the same space (compared when a run is resumed)."""
        return {label: [self.kinds[label], list(cell.ops), cell.inputs, cell.keep]
                for label, cell in self.cells.items()}


def read_arch(path: str | os.PathLike) -> ModelArch:
    """The arch of an arch.json file or of a run folder holding one."""
    p = Path(path)
    if p.is_dir():
        p = p / ARCH_FILE
    if not p.is_file():
        raise NaspError(f"architecture file {p} does not exist",
                        "pass a run folder of a search on your model (it holds arch.json), "
                        "an arch.json path or a dict")
    data = read_json(p)
    if not isinstance(data, dict):
        raise NaspError(f"{p} does not hold a JSON object", "fix or regenerate the file")
    return ModelArch(data)


def read_own_search(run_dir: str | os.PathLike) -> tuple[str, ModelArch, dict[str, Any]]:
    """(``--space`` reference, arch, config) of a ``nasp search --space FILE.py:FUNCTION`` run:
    what rebuilding its model and fixing its architecture needs."""
    p = Path(run_dir)
    config_path = p / "config.json"
    if not config_path.is_file():
        raise NaspError(f"{p} is not a nasp run folder (no config.json)",
                        "pass the folder of a `nasp search --space FILE.py:FUNCTION` run")
    config = read_json(config_path)
    space = str(config.get("space", "")) if isinstance(config, dict) else ""
    if not isinstance(config, dict) or config.get("command") != "search":
        raise NaspError(f"{p} is not a search run", "pass the folder of a `nasp search --space "
                        "FILE.py:FUNCTION` run")
    if config.get("task") == MODEL_FAMILY:
        raise NaspError(f"{p} searched a model given from Python, which it cannot rebuild",
                        "fix it in Python: nasp.fix(model, arch) with the run's arch.json")
    if not is_model_ref(space):
        raise NaspError(f"{p} searched the built-in space {space!r}, not your own model",
                        f"use --genotype {p} for a built-in space's cell")
    return space, read_arch(p), config


# --- FILE.py:FUNCTION / package.module:FUNCTION ------------------------------------------------

def is_model_ref(space: str) -> bool:
    """Whether ``--space`` names a function building a user model (``FILE.py:FUNCTION`` or
    ``package.module:FUNCTION``) rather than a registered space."""
    return ":" in space


_HINT = "pass --space FILE.py:FUNCTION or package.module:FUNCTION"


def load_factory(ref: str) -> Callable[..., Any]:
    """The function ``ref`` names; every failure is one ``NaspError`` naming the fix."""
    where, _, func = ref.rpartition(":")
    if not where or not func.isidentifier():
        raise NaspError(f"--space {ref!r} names no function", _HINT)
    if where.endswith(".py") or "/" in where or os.sep in where:
        path = Path(where)
        if not path.is_file():
            raise NaspError(f"--space {ref!r}: file {path} does not exist", _HINT)
        key = "nasp_space_" + hashlib.sha1(str(path.resolve()).encode()).hexdigest()[:12]
        module = sys.modules.get(key)
        if module is None:
            spec = importlib.util.spec_from_file_location(key, path)
            if spec is None or spec.loader is None:
                raise NaspError(f"--space {ref!r}: {path} cannot be imported", _HINT)
            module = importlib.util.module_from_spec(spec)
            sys.modules[key] = module  # pickling and dataclasses look modules up by name
            try:
                spec.loader.exec_module(module)
            except Exception as e:  # the user's code: any error is theirs to fix
                del sys.modules[key]
                raise NaspError(f"--space {ref!r}: importing {path} failed "
                                f"({type(e).__name__}: {e})",
                                f"fix the file (`python {path}` shows the traceback)") from None
    else:
        try:
            module = importlib.import_module(where)
        except Exception as e:
            raise NaspError(f"--space {ref!r}: module {where!r} cannot be imported "
                            f"({type(e).__name__}: {e})", _HINT) from None
    fn = getattr(module, func, None)
    if fn is None or not callable(fn):
        raise NaspError(f"--space {ref!r}: {where} has no function {func!r}",
                        f"define {func}(in_channels, num_classes) there, returning the model")
    return fn


def build_model(ref: str, in_channels: int, num_classes: int) -> nn.Module:
    """The model ``ref``'s function returns for the data's channels and classes."""
    fn = load_factory(ref)
    try:
        model = fn(in_channels, num_classes)
    except NaspError:
        raise
    except Exception as e:
        raise NaspError(f"--space {ref!r}: calling it with (in_channels={in_channels}, "
                        f"num_classes={num_classes}) failed ({type(e).__name__}: {e})",
                        "the function takes (in_channels, num_classes) and returns the model"
                        ) from None
    if not isinstance(model, nn.Module):
        raise NaspError(f"--space {ref!r} returned a {type(model).__name__}, not a "
                        "torch.nn.Module", "return the model from the function")
    return model
