"""Read run folders (docs/run-folder.md) into plain Python data for plots, tables and reports.

The viz layer reads only these JSON files, never the training code, so a run folder copied from
another machine (or written by an older nasp) can be inspected without torch or the search
space that produced it. Only ``config.json`` is required: a search that is still running or
crashed has no ``result.json`` yet, and a train run has no ``arch.jsonl``; readers that need a
missing file ask for it through :meth:`Run.require`, which names the file and what writes it.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nasp.errors import NaspError
from nasp.files import read_json  # the one JSON reader of run folders (no torch)

RUN_FILES = ("config.json", "metrics.jsonl", "arch.jsonl", "genotype.json", "arch.json",
             "result.json")
_WRITTEN_BY = {
    "config.json": "every nasp search/train/compare run",
    "metrics.jsonl": "every run, one line per finished epoch",
    "arch.jsonl": "nasp search (train runs have no architecture history)",
    "genotype.json": "nasp search, at the end of the search",
    "result.json": "every run, when it finishes",
}
_NOT_A_RUN_HINT = (
    "pass a folder written by nasp search/train/compare (it holds config.json), "
    "or a folder that contains such folders"
)


@dataclass(frozen=True)
class Run:
    """One run folder's contents; missing optional files are empty rather than errors."""

    path: Path
    config: dict[str, Any]
    metrics: list[dict[str, Any]] = field(default_factory=list)
    arch: list[dict[str, Any]] = field(default_factory=list)
    genotype: dict[str, Any] | None = None
    result: dict[str, Any] = field(default_factory=dict)
    own_arch: dict[str, Any] | None = None  # a search of the user's model: arch.json

    @property
    def own_model(self) -> bool:
        """Whether the run searched a user's own model (its record is arch.json, a
        choice-by-candidate architecture, not a cell genotype)."""
        return self.own_arch is not None or self.config.get("task") == "model" or \
            ":" in str(self.config.get("space", ""))

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def strategy(self) -> str:
        return str(self.config.get("strategy") or "unknown")

    @property
    def seed(self) -> int | None:
        seed = self.config.get("seed")
        return int(seed) if isinstance(seed, (int, float)) else None

    @property
    def lambda_params(self) -> float | None:
        """The regularizer weight λ (``lambda_cost``; ``lambda_params`` in older runs)."""
        lam = self.config.get("lambda_cost", self.config.get("lambda_params"))
        return float(lam) if isinstance(lam, (int, float)) else None

    @property
    def task(self) -> str:
        """"lm" or "cnn"; inferred from the metrics when an old config lacks ``task``."""
        task = self.config.get("task")
        if task in ("cnn", "lm"):
            return str(task)
        if any("valid_ppl" in m for m in self.metrics) or "valid_ppl" in self.result:
            return "lm"
        return "cnn"

    def require(self, filename: str) -> None:
        """Raise a ``NaspError`` naming ``filename`` when this run did not write it."""
        present = {
            "metrics.jsonl": bool(self.metrics),
            "arch.jsonl": bool(self.arch),
            "genotype.json": self.genotype is not None,
            "result.json": bool(self.result),
        }.get(filename, True)
        if not present:
            raise NaspError(
                f"{self.path / filename} is missing or empty",
                f"it is written by {_WRITTEN_BY.get(filename, 'nasp')}; "
                "wait for the run to finish or pass another run folder",
            )


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records keyed by epoch, the last occurrence winning, in epoch order.

    A resumed run may append an epoch a second time, and a run killed mid-write may leave a
    truncated last line; both are normal, so the later record wins and an unparsable *last*
    line is dropped. A bad line elsewhere means real damage and is reported.
    """
    if not path.exists():
        return []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise NaspError(f"cannot read {path}: {e.strerror}", "check the path and permissions") \
            from None
    numbered = [(i + 1, line) for i, line in enumerate(lines) if line.strip()]
    by_epoch: dict[Any, dict[str, Any]] = {}
    for k, (lineno, line) in enumerate(numbered):
        try:
            record = json.loads(line)
        except json.JSONDecodeError as e:
            if k == len(numbered) - 1:
                break
            raise NaspError(
                f"{path} line {lineno} is not valid JSON ({e.msg})",
                "the file is damaged; delete that line or re-run",
            ) from None
        if not isinstance(record, dict):
            raise NaspError(f"{path} line {lineno} is not a JSON object", "see docs/run-folder.md")
        by_epoch[record.get("epoch", len(by_epoch))] = record
    return [by_epoch[k] for k in sorted(by_epoch, key=_epoch_key)]


def _epoch_key(epoch: Any) -> tuple[int, float]:
    return (0, float(epoch)) if isinstance(epoch, (int, float)) else (1, 0.0)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Read one run folder; a ``NaspError`` says why a path is not one and what to pass."""
    p = Path(path)
    if not p.exists():
        raise NaspError(f"run folder {p} does not exist", _NOT_A_RUN_HINT)
    if p.is_file():
        if p.name in RUN_FILES:
            p = p.parent
        else:
            raise NaspError(f"{p} is a file, not a run folder", _NOT_A_RUN_HINT)
    config_path = p / "config.json"
    if not config_path.is_file():
        raise NaspError(f"{p} is not a run folder: it has no config.json", _NOT_A_RUN_HINT)
    config = read_json(config_path)
    if not isinstance(config, dict):
        raise NaspError(f"{config_path} is not a JSON object", "see docs/run-folder.md")
    result: dict[str, Any] = {}
    if (p / "result.json").is_file():
        loaded = read_json(p / "result.json")
        if not isinstance(loaded, dict):
            raise NaspError(f"{p / 'result.json'} is not a JSON object", "see docs/run-folder.md")
        result = loaded
    genotype = read_json(p / "genotype.json") if (p / "genotype.json").is_file() else None
    if genotype is None and isinstance(result.get("genotype"), dict):
        genotype = result["genotype"]
    own = read_json(p / "arch.json") if (p / "arch.json").is_file() else None
    if own is None and isinstance(result.get("arch"), dict):
        own = result["arch"]
    return Run(
        path=p,
        config=config,
        metrics=_read_jsonl(p / "metrics.jsonl"),
        arch=_read_jsonl(p / "arch.jsonl"),
        genotype=genotype,
        result=result,
        own_arch=own if isinstance(own, dict) else None,
    )


def find_run_dirs(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand each path to run folders: itself if it is one, else the run folders below it.

    This lets ``nasp report runs/`` cover a whole sweep. A folder with ``config.json`` is a run
    and is not searched further; duplicates (the same folder named twice) are dropped.
    """
    found: list[Path] = []
    for path in paths:
        p = Path(path)
        if p.is_file() and p.name in RUN_FILES:
            p = p.parent
        if not p.is_dir() or (p / "config.json").is_file():
            found.append(p)  # load_run explains what is wrong with a bad path
            continue
        below = sorted(c.parent for c in p.rglob("config.json"))
        runs = [d for d in below if not any(a in below for a in d.parents)]
        if not runs:
            raise NaspError(f"{p} is not a run folder and holds none", _NOT_A_RUN_HINT)
        found.extend(runs)
    unique: list[Path] = []
    for p in found:
        if p.resolve() not in {u.resolve() for u in unique}:
            unique.append(p)
    return unique


def load_runs(paths: Sequence[str | os.PathLike[str]]) -> list[Run]:
    """Load every run folder named by ``paths`` (see :func:`find_run_dirs`), in that order."""
    if not paths:
        raise NaspError("no run folders given", "pass at least one run folder")
    return [load_run(p) for p in find_run_dirs(paths)]


def run_labels(runs: Sequence[Run]) -> list[str]:
    """Short legend labels that tell the runs apart: strategy, then seed, λ, folder as needed."""
    parts: list[list[str]] = [[r.strategy] for r in runs]
    extras = [
        lambda r: f"seed {r.seed}" if r.seed is not None else "",
        lambda r: f"λ={r.lambda_params:g}" if r.lambda_params is not None else "",
        lambda r: r.name,
    ]
    for extra in extras:
        labels = [", ".join(p) for p in parts]
        if len(set(labels)) == len(labels):
            break
        dup = {lab for lab in labels if labels.count(lab) > 1}
        for r, p, lab in zip(runs, parts, labels, strict=True):
            value = extra(r)
            if lab in dup and value:
                p.append(value)
    return [", ".join(p) for p in parts]


def number(value: Any) -> float | None:
    """A finite JSON number as a float, else ``None``: the one reading of a metric by tables,
    plots and TensorBoard, so a missing, textual or non-finite value is left out everywhere
    alike rather than shown by one and averaged into a mean by another."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def final_metric(run: Run, name: str) -> float | None:
    """The final architecture's own held-out score, e.g. ``test_acc``: a search's
    ``final_<name>`` (retrained by ``nasp compare``) or a train run's ``<name>``. Never a
    search-time metric: a search that was not retrained has none (``None``)."""
    key = name if run.config.get("command") == "train" else f"final_{name}"
    return number(run.result.get(key))


def search_metric(run: Run, name: str) -> float | None:
    """A search's search-time ``search_<name>`` (e.g. valid_acc of the network named by
    ``search_network``), from result.json."""
    return number(run.result.get(f"search_{name}"))


def eval_params_m(run: Run) -> float | None:
    """Parameters (M) of the evaluation network: search ``eval_params_m``, train ``params_m``."""
    for key in ("eval_params_m", "params_m"):
        value = number(run.result.get(key))
        if value is not None:
            return value
    return None


def input_label(cell: str, j: int, inputs: int) -> str:
    """The name a cell diagram gives state ``j``: c_{k-2}/c_{k-1} or a node number."""
    if cell in ("recurrent", "cell"):  # node 0 is the first state (NAS-Bench-201's input)
        return f"node {j}"
    if j < inputs:
        return ("c_{k-2}", "c_{k-1}")[j] if inputs == 2 else f"input {j}"
    return f"node {j - inputs}"


def edge_title(cell: str, node: int, j: int, inputs: int) -> str:
    """Panel title of edge (node, input), numbered as in the cell diagrams."""
    shown = node + 1 if cell in ("recurrent", "cell") else node
    return f"node {shown} ← {input_label(cell, j, inputs)}"
