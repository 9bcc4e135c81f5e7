"""TensorBoard event files for a run, in ``RUN/tb/``: an optional view, never the record.

metrics.jsonl and arch.jsonl stay the source of truth (docs/run-folder.md); this module turns
their records into TensorBoard scalars so a run can be watched the way Lightning, timm or NNI
users watch theirs. It needs the ``tensorboard`` package (``pip install 'nasp[tensorboard]'``);
without it, asking for TensorBoard is one clear error rather than a failure deep in a search.

Steps count finished epochs: arch.jsonl's epoch -1 (the initial architecture) is step 0 and the
records of epoch ``e`` are step ``e + 1``, so metrics and architecture share one axis.

Tags: ``loss/train``, ``accuracy/valid``, ``perplexity/valid``, ``lr/lr``, ``time/arch``,
``time/forward``, ``time/backward``, ``time/epoch``, ``time/wall``, ``memory/peak_mb``, other
numeric fields under ``other/``; architecture parameters as
``arch/<cell>/<matrix>/<edge>/<op>`` (e.g. ``arch/normal/A/e03 node 1 ← c_{k-2}/sep_conv_3x3``),
with a Custom Scalars layout that draws each edge as one chart with a line per op (the paper's
Figure 4).
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nasp.errors import NaspError
from nasp.viz.runs import edge_title, load_run, number

_INSTALL_HINT = ("install it with pip install 'nasp[tensorboard]' (or pip install tensorboard), "
                 "or leave out --tensorboard; metrics.jsonl and arch.jsonl hold the same numbers")
_SUFFIXES = (("_loss", "loss"), ("_acc", "accuracy"), ("_ppl", "perplexity"))
_NAMED = {
    "time_arch": "time/arch", "time_forward": "time/forward", "time_backward": "time/backward",
    "epoch_time": "time/epoch", "wall_time": "time/wall", "peak_mem_mb": "memory/peak_mb",
}


def _summary_writer_class() -> Any:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        raise NaspError("TensorBoard logging needs the 'tensorboard' package, which is not "
                        "installed", _INSTALL_HINT) from None
    return SummaryWriter


def require_tensorboard() -> None:
    """Raise the one clear error when ``--tensorboard`` is asked for without the package."""
    _summary_writer_class()


def tensorboard_available() -> bool:
    """Whether :class:`TensorBoardLogger` can be made, for callers that check up front."""
    try:
        _summary_writer_class()
    except NaspError:
        return False
    return True


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a metrics.jsonl field, grouped so related curves sit together."""
    if key in _NAMED:
        return _NAMED[key]
    for suffix, group in _SUFFIXES:
        if key.endswith(suffix):
            return f"{group}/{key[: -len(suffix)]}"
    if key == "lr" or key.endswith("_lr"):
        return f"lr/{key}"
    return f"other/{key}"


def edge_name(cell: str, e: int, node: int, j: int, inputs: int) -> str:
    """``e03 node 1 ← c_{k-2}``: numbered as the cell diagrams are, prefixed by the edge index
    so TensorBoard sorts edges in arch.jsonl's order."""
    return f"e{e:02d} {edge_title(cell, node, j, inputs)}"


class TensorBoardLogger:
    """Writes the metrics and architecture records of one run to ``run_dir/tb``.

    ``purge_step``: TensorBoard drops what earlier processes wrote from this step on. A resumed
    run passes its first step (epochs done + 1), so the epochs the interrupted process got past
    its checkpoint show once; a fresh run in a reused folder passes 0.
    """

    def __init__(self, run_dir: str | os.PathLike[str], *, purge_step: int | None = None,
                 subdir: str = "tb") -> None:
        writer_class = _summary_writer_class()
        self.log_dir = Path(run_dir) / subdir
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._writer = writer_class(log_dir=str(self.log_dir), purge_step=purge_step)
        self._layout_written = False

    def log_metrics(self, record: Mapping[str, Any]) -> None:
        """Every finite numeric field of a metrics.jsonl record, at step ``epoch + 1``."""
        step = int(record["epoch"]) + 1
        for key, value in record.items():
            scalar = number(value)
            if key != "epoch" and scalar is not None:
                self._writer.add_scalar(scalar_tag(key), scalar, step)

    def log_arch(self, record: Mapping[str, Any]) -> None:
        """Every matrix of an arch.jsonl record (A, A_bar, alpha, softmax, ASAP's weights:
        whatever it holds), one scalar per edge and op, at step ``epoch + 1``."""
        step = int(record["epoch"]) + 1
        layout: dict[str, dict[str, list]] = {}
        for cell, data in (record.get("cells") or {}).items():
            edges = [tuple(e) for e in data.get("edges", [])]
            ops = list(data.get("ops", []))
            inputs = sum(1 for node, _ in edges if node == 0)
            names = [edge_name(cell, e, node, j, inputs) for e, (node, j) in enumerate(edges)]
            for matrix, rows in (data.get("weights") or {}).items():
                charts = layout.setdefault(f"arch {cell} {matrix}", {})
                for e, row in enumerate(rows[:len(names)]):
                    prefix = f"arch/{cell}/{matrix}/{names[e]}"
                    charts[names[e]] = ["Multiline", [re.escape(prefix) + "/.*"]]
                    for op, value in zip(ops, row):
                        scalar = number(value)
                        if scalar is not None:
                            self._writer.add_scalar(f"{prefix}/{op}", scalar, step)
        if layout and not self._layout_written:
            self._writer.add_custom_scalars(layout)
            self._layout_written = True

    def log_epoch(self, metrics: Mapping[str, Any] | None = None,
                  arch: Mapping[str, Any] | None = None) -> None:
        """One epoch's records, as appended to metrics.jsonl and arch.jsonl; flushed, so a
        running TensorBoard shows the epoch at once."""
        if metrics is not None:
            self.log_metrics(metrics)
        if arch is not None:
            self.log_arch(arch)
        self._writer.flush()

    def close(self) -> None:
        self._writer.close()

    def __enter__(self) -> TensorBoardLogger:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def write_run_tensorboard(run_dir: str | os.PathLike[str]) -> Path:
    """Write ``run_dir/tb`` from the run's metrics.jsonl and arch.jsonl, e.g. for a run made
    without ``--tensorboard`` or on another machine. Returns the tb folder."""
    run = load_run(run_dir)
    run.require("metrics.jsonl")
    tb = run.path / "tb"
    if tb.exists() and any(tb.iterdir()):
        raise NaspError(f"{tb} already holds TensorBoard files",
                        "delete that folder to write it again")
    with TensorBoardLogger(run.path) as logger:
        for record in run.arch:
            logger.log_arch(record)
        for record in run.metrics:
            logger.log_metrics(record)
    return tb
