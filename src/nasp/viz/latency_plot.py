"""Latency against true accuracy on a device: where the cells a budgeted search found sit.

For each device the searches targeted (``--target-device``): every NAS-Bench-201 cell as a
grey point (its measured latency there, its true accuracy), the Pareto front (no cell is both
faster and more accurate), each budget the searches had as a vertical line, and the found
cells on top, one colour per budget. The grey cloud is drawn as an image inside the SVG, so a
figure of 15,625 points stays small enough for the HTML report.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from nasp.errors import NaspError
from nasp.viz.figures import FORMATS, RC, save_figure
from nasp.viz.plots import _new_figure
from nasp.viz.runs import Run, number

DATASETS = {"cifar10": ("cifar10_test", "CIFAR-10"), "cifar100": ("cifar100_test", "CIFAR-100"),
            "imagenet16": ("imagenet16_test", "ImageNet16-120")}


def target_device(run: Run) -> str | None:
    device = run.result.get("target_device") or run.config.get("target_device")
    return str(device) if device else None


def latency_runs(runs: Sequence[Run]) -> list[Run]:
    """Runs that name a target device and hold a found cell with its measured latency."""
    return [r for r in runs if target_device(r) and number(r.result.get("nb201_latency_ms"))
            is not None]


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The cells no other cell beats on both: sorted by latency, accuracy rising."""
    order = np.lexsort((-accuracy, latency))
    best, xs, ys = -np.inf, [], []
    for i in order:
        if accuracy[i] > best:
            best = accuracy[i]
            xs.append(latency[i])
            ys.append(accuracy[i])
    return np.asarray(xs), np.asarray(ys)


def latency_figure(runs: Sequence[Run], dataset: str = "cifar100") -> Figure:
    """One panel per target device (module doc)."""
    from nasp.nb201.latency import latency_table
    from nasp.nb201.table import table

    found = latency_runs(runs)
    if not found:
        raise NaspError("none of the runs searched with --target-device",
                        "pass nb201 searches run with --target-device D (and --latency-target)")
    column, title = DATASETS[dataset]
    devices = list(dict.fromkeys(target_device(r) for r in found))
    acc = np.asarray(table().acc[column])
    cols = min(3, len(devices))
    rows = -(-len(devices) // cols)
    with matplotlib.rc_context(RC):
        fig = _new_figure(4.8 * cols, 3.9 * rows)
        grid = fig.subplots(rows, cols, squeeze=False)
        axes = [ax for line in grid for ax in line]
        for ax in axes[len(devices):]:
            ax.set_visible(False)
        for ax, device in zip(axes, devices):
            lat = latency_table().column(device)
            ax.scatter(lat, acc, s=2, c="0.78", linewidths=0, rasterized=True,
                       label="every cell of the benchmark")
            px, py = pareto_front(lat, acc)
            ax.step(px, py, where="post", color="0.25", linewidth=1, label="Pareto front")
            mine = [r for r in found if target_device(r) == device]
            budgets = sorted({b for b in (number(r.result.get("latency_target_ms"))
                                          for r in mine) if b is not None})
            colours = {b: f"C{i % 10}" for i, b in enumerate(budgets)}
            for b in budgets:
                ax.axvline(b, color=colours[b], linestyle="--", linewidth=1,
                           label=f"budget {b:g} ms")
            for r in mine:
                b = number(r.result.get("latency_target_ms"))
                y = number(r.result.get(f"nb201_{column}"))
                if y is None:
                    continue
                ax.scatter([r.result["nb201_latency_ms"]], [y], s=28, marker="o",
                           color=colours.get(b, "C3"), edgecolors="black", linewidths=0.6,
                           zorder=3)
            ax.scatter([], [], s=28, color="white", edgecolors="black", linewidths=0.6,
                       label="found cells (colour: budget)")
            right = max([*budgets, *(r.result["nb201_latency_ms"] for r in mine)]) * 1.6
            ax.set_xlim(0, min(float(lat.max()), right))
            low = min([30.0, *(number(r.result.get(f"nb201_{column}")) or 30.0 for r in mine)])
            ax.set_ylim(max(float(acc.min()), low - 3.0), float(acc.max()) + 1.5)
            ax.set_xlabel(f"measured latency on {device} (ms)")
            ax.set_ylabel(f"{title} test accuracy (%)")
            ax.set_title(f"{device}: every cell, and the cells found")
            ax.grid(alpha=0.3)
            ax.legend(loc="lower right", frameon=True, framealpha=0.85, fontsize=7)
    return fig


def plot_latency(runs: Sequence[Run], out_dir: str | os.PathLike[str],
                 stem: str = "latency-vs-accuracy",
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """``latency-vs-accuracy.<fmt>``: the figure above."""
    return save_figure(latency_figure(runs), Path(out_dir) / stem, formats)
