"""The paper's figures from run folders: architecture weights (Fig. 4), accuracy against wall
time (Fig. 3) and model size / accuracy against the regularizer weight λ (Fig. 2).

Every figure is built by a ``*_figure`` function that returns a matplotlib ``Figure`` (so tests
and the HTML report can inspect or embed it) and saved by a ``plot_*`` function that writes one
file per format and returns the paths. Figures are drawn on an explicit Agg canvas, never through
pyplot: nothing here needs a display, changes the process-wide backend of a notebook that imports
nasp, or leaks figures into pyplot's registry when many runs are plotted.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from statistics import mean
from typing import Any

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nasp.errors import NaspError
from nasp.viz.figures import FORMATS, RC, save_figure
from nasp.viz.runs import Run, edge_title, eval_params_m, final_metric, run_labels


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


# --- architecture weights ----------------------------------------------------------------------

def arch_matrices(run: Run) -> list[tuple[str, str]]:
    """The (cell, weights name) pairs recorded in arch.jsonl, in order of first appearance."""
    run.require("arch.jsonl")
    seen: list[tuple[str, str]] = []
    for record in run.arch:
        for cell, data in (record.get("cells") or {}).items():
            for name in (data.get("weights") or {}):
                if (cell, name) not in seen:
                    seen.append((cell, name))
    if not seen:
        raise NaspError(f"{run.path / 'arch.jsonl'} records no weights",
                        "each line needs cells.<cell>.weights; see docs/run-folder.md")
    return seen


def arch_weights_figure(run: Run, cell: str, name: str) -> Figure:
    """One panel per edge laid out as the DAG (row = node, column = input), one line per op.

    Panels share the y axis so edges can be compared at a glance, and the op legend is shown
    once for the figure instead of in every panel.
    """
    epochs, series = [], []
    ops: list[str] = []
    edges: list[tuple[int, int]] = []
    for record in run.arch:
        data = (record.get("cells") or {}).get(cell)
        if not data or name not in (data.get("weights") or {}):
            continue
        rec_ops, rec_edges = list(data["ops"]), [tuple(e) for e in data["edges"]]
        if series and (rec_ops != ops or rec_edges != edges):
            raise NaspError(f"{run.path / 'arch.jsonl'} epoch {record.get('epoch')}: the "
                            f"{cell} cell's ops or edges differ from the earlier epochs",
                            "arch.jsonl must come from one search; start a new run folder")
        ops, edges = rec_ops, rec_edges
        matrix = data["weights"][name]
        if len(matrix) != len(edges) or any(len(row) != len(ops) for row in matrix):
            raise NaspError(
                f"{run.path / 'arch.jsonl'} epoch {record.get('epoch')}: {cell}.{name} is not "
                f"an ({len(edges)} edges x {len(ops)} ops) matrix", "see docs/run-folder.md")
        epochs.append(record.get("epoch", len(epochs)))
        series.append(matrix)
    if not series:
        raise NaspError(f"{run.path / 'arch.jsonl'} has no {cell}.{name} weights",
                        f"recorded: {', '.join(f'{c}.{n}' for c, n in arch_matrices(run))}")

    nodes = max(n for n, _ in edges) + 1
    inputs = sum(1 for n, _ in edges if n == 0)  # node 0 reads exactly the cell inputs
    cols = max(j for _, j in edges) + 1
    with matplotlib.rc_context(RC):
        # Margins in inches on a size computed from the grid: a solved (constrained) layout
        # would cost more than drawing the 14 or 36 panels themselves.
        width, height = 1.9 * cols + 0.8, 1.5 * nodes + 1.5
        fig = _new_figure(width, height, layout=None)
        fig.subplots_adjust(left=0.65 / width, right=1 - 0.15 / width, top=1 - 0.6 / height,
                            bottom=1.15 / height, wspace=0.22, hspace=0.5)
        grid = fig.subplots(nodes, cols, sharex=True, sharey=True, squeeze=False)
        used = set()
        marker = "o" if len(epochs) <= 12 else None
        for e, (node, j) in enumerate(edges):
            ax = grid[node][j]
            used.add((node, j))
            for k, op in enumerate(ops):
                ax.plot(epochs, [m[e][k] for m in series], label=op, marker=marker,
                        markersize=2.5, linewidth=1.2)
            ax.set_title(edge_title(cell, node, j, inputs))
            ax.grid(alpha=0.3)
        for node in range(nodes):
            for j in range(cols):
                if (node, j) not in used:
                    grid[node][j].remove()
        for j in range(cols):  # label the bottom panel of every column that has one
            bottom = max((n for n, jj in used if jj == j), default=None)
            if bottom is not None:
                grid[bottom][j].set_xlabel("epoch")
                grid[bottom][j].tick_params(labelbottom=True)
        for node in range(nodes):
            grid[node][0].set_ylabel(name)
        first = grid[edges[0][0]][edges[0][1]]
        handles, labels = first.get_legend_handles_labels()
        fig.legend(handles, labels, loc="lower center", ncols=min(len(ops), 6),
                   title="operation", bbox_to_anchor=(0.5, 0.0), frameon=False)
        fig.suptitle(f"{run.name} ({run.strategy}): {cell} cell, {name} by epoch",
                     y=1 - 0.12 / height, va="top")
    return fig


# the matrix a strategy summary shows: what the network mixes or runs, on a common scale
SUMMARY_MATRICES = ("softmax", "A", "weights", "alpha", "A_bar")


def _last_matrix(run: Run, cell: str, name: str) -> tuple[list[str], list[tuple[int, int]],
                                                             list[list[float]]] | None:
    for record in reversed(run.arch):
        data = (record.get("cells") or {}).get(cell)
        if data and name in (data.get("weights") or {}):
            return list(data["ops"]), [tuple(e) for e in data["edges"]], data["weights"][name]
    return None


def arch_summary_figure(runs: Sequence[Run]) -> Figure:
    """One compact figure for several runs of a strategy (its seeds): per cell type, a heat map
    of the final architecture weights (edge x op), averaged over the runs, each op a genotype
    kept marked with how many of the runs kept it.

    The per-epoch figures (:func:`arch_weights_figure`) are many panels per run; a report over
    many runs needs one picture per strategy that still shows how sure and how reproducible
    the search was.
    """
    import numpy as np

    from nasp.viz.cells import checked_edges

    searched = [r for r in runs if r.arch]
    if not searched:
        runs[0].require("arch.jsonl")
    first = searched[0]
    pairs = arch_matrices(first)
    cells = list(dict.fromkeys(c for c, _ in pairs))
    panels = []
    for cell in cells:
        names = [n for c, n in pairs if c == cell]
        name = next((n for n in SUMMARY_MATRICES if n in names), names[0])
        ref = _last_matrix(first, cell, name)
        assert ref is not None
        ops, edges, _ = ref
        used, mats = [], []
        for run in searched:
            got = _last_matrix(run, cell, name)
            if got is not None and got[0] == ops and got[1] == edges:
                used.append(run)
                mats.append(got[2])
        kept = np.zeros((len(edges), len(ops)), dtype=int)
        for run in used:
            if run.genotype is None:
                continue
            try:
                walk = checked_edges(run.genotype, cell)
            except NaspError:  # no such cell (another family), or a damaged genotype.json
                continue
            for node, j, op in walk:
                if (node, j) in edges and op in ops:
                    kept[edges.index((node, j)), ops.index(op)] += 1
        panels.append((cell, name, ops, edges, np.mean(np.array(mats, dtype=float), axis=0),
                       kept, len(used)))
    with matplotlib.rc_context(RC):
        rows = max(len(p[3]) for p in panels)
        width = sum(0.9 + 0.28 * len(p[2]) + 0.9 for p in panels) + 0.4
        height = 0.19 * rows + 2.0
        fig = _new_figure(width, height)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (cell, name, ops, edges, mean_w, kept, n) in zip(axes, panels, strict=True):
            image = ax.imshow(mean_w, cmap="Blues", aspect="auto", interpolation="nearest",
                              vmin=min(0.0, float(mean_w.min())),
                              vmax=max(float(mean_w.max()), 1e-9))
            ax.set_xticks(range(len(ops)), ops, rotation=60, ha="right",
                          rotation_mode="anchor")
            inputs = sum(1 for node, _ in edges if node == 0)
            ax.set_yticks(range(len(edges)),
                          [edge_title(cell, node, j, inputs) for node, j in edges])
            ax.tick_params(length=0)
            high = float(mean_w.max())
            for e, k in zip(*np.nonzero(kept)):
                dark = mean_w[e, k] > 0.6 * high
                ax.text(k, e, str(kept[e, k]), ha="center", va="center", fontsize=8,
                        color="white" if dark else "#1a1a1a", fontweight="bold")
            ax.set_title(f"{cell} cell: final {name}, mean of {n} run{'s' * (n != 1)}")
            fig.colorbar(image, ax=ax, shrink=0.6, pad=0.02)
        fig.suptitle(f"{first.strategy}: numbers count the runs whose genotype kept that op")
    return fig


def plot_arch_weights(run: Run, out_dir: str | os.PathLike[str],
                      formats: Sequence[str] = FORMATS) -> list[Path]:
    """``arch-<cell>-<name>.<fmt>`` for every weights matrix and cell type of a search run."""
    paths: list[Path] = []
    for cell, name in arch_matrices(run):
        fig = arch_weights_figure(run, cell, name)
        paths += save_figure(fig, Path(out_dir) / f"arch-{_safe(cell)}-{_safe(name)}", formats)
    return paths


# --- validation metric against wall-clock time --------------------------------------------------

def _time_series(run: Run, metric: str) -> tuple[list[float], list[float]]:
    xs, ys, elapsed = [], [], 0.0
    for m in run.metrics:
        if isinstance(m.get("epoch_time"), (int, float)):
            elapsed += m["epoch_time"]
        t = m.get("wall_time")
        if not isinstance(t, (int, float)) and isinstance(m.get("epoch_time"), (int, float)):
            t = elapsed  # older or partial records: rebuild the clock from epoch times
        y = m.get(metric)
        if isinstance(t, (int, float)) and isinstance(y, (int, float)):
            xs.append(float(t))
            ys.append(float(y) * (100.0 if metric == "valid_acc" else 1.0))
    return xs, ys


def _time_unit(seconds: float) -> tuple[str, float]:
    if seconds <= 300:
        return "s", 1.0
    if seconds <= 3 * 3600:
        return "min", 60.0
    return "h", 3600.0


def accuracy_vs_time_figure(runs: Sequence[Run]) -> Figure:
    """One line per run: validation accuracy (%) or, for language models, perplexity.

    CNN and LM runs given together get one panel each rather than sharing a meaningless axis.
    """
    if not runs:
        raise NaspError("no runs to plot", "pass at least one run folder")
    for run in runs:
        run.require("metrics.jsonl")
    labels = dict(zip((id(r) for r in runs), run_labels(runs), strict=True))
    panels = [(task, [r for r in runs if r.task == task]) for task in ("cnn", "lm")]
    panels = [(task, rs) for task, rs in panels if rs]
    longest = max((x for r in runs for x in _time_series(r, _metric(r))[0]), default=0.0)
    unit, scale = _time_unit(longest)
    style = line_styles(runs)
    with matplotlib.rc_context(RC):
        fig = _new_figure(5.5 * len(panels) + (1.6 if len(runs) > 1 else 0.0), 3.8)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (task, task_runs) in zip(axes, panels, strict=True):
            metric = "valid_ppl" if task == "lm" else "valid_acc"
            for run in task_runs:
                xs, ys = _time_series(run, metric)
                if not xs:
                    raise NaspError(f"{run.path / 'metrics.jsonl'} has no {metric} with a time",
                                    "each line needs wall_time (or epoch_time) and " + metric)
                ax.plot([x / scale for x in xs], ys, **style[id(run)], label=labels[id(run)])
            ax.set_xlabel(f"wall-clock time ({unit})")
            # what a search evaluates differs by strategy (NASP: the network under Ā; DARTS:
            # the softmax mixture; ...): a search-time figure, never the genotype's own score
            ax.set_ylabel("search-time valid perplexity" if task == "lm"
                          else "search-time valid accuracy (%)")
            ax.set_title("search network's validation perplexity vs. time" if task == "lm"
                         else "search network's validation accuracy vs. time")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                      ncols=1 if len(task_runs) <= 14 else 2)
    return fig


def line_styles(runs: Sequence[Run]) -> dict[int, dict[str, Any]]:
    """Per run (by id): a comparison holds strategies x seeds runs; one colour per strategy and
    one marker / dash per repeat keeps 21 lines readable where a colour per run would cycle."""
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    colours = {name: f"C{i % 10}" for i, name in enumerate(strategies)}
    markers, dashes = "os^Dvx*P", ("-", "--", ":", "-.")
    seen: dict[str, int] = {}
    out = {}
    for run in runs:
        k = seen.get(run.strategy, 0)
        seen[run.strategy] = k + 1
        out[id(run)] = dict(color=colours[run.strategy], marker=markers[k % len(markers)],
                            markersize=3, linestyle=dashes[k % len(dashes)])
    return out


# NAS-Bench-201 ground truth columns of metrics.jsonl: (key, title)
BENCHMARK = (("nb201_cifar10_test", "CIFAR-10"), ("nb201_cifar100_test", "CIFAR-100"),
             ("nb201_imagenet16_test", "ImageNet16-120"))


def benchmark_runs(runs: Sequence[Run]) -> list[Run]:
    """The runs whose metrics carry NAS-Bench-201 ground truth (searches on the nb201 space)."""
    return [r for r in runs if any(BENCHMARK[0][0] in m for m in r.metrics)]


def benchmark_figure(runs: Sequence[Run]) -> Figure:
    """The benchmark papers' figure: per epoch, the ground-truth test accuracy of the cell each
    search holds, one line per strategy and seed, one panel per benchmark dataset, with the
    benchmark's best cell as a dashed line."""
    runs = benchmark_runs(runs)
    if not runs:
        raise NaspError("none of the runs records NAS-Bench-201 ground truth",
                        "pass searches of the nb201 space (nasp search --space nb201)")
    from nasp.nb201 import best

    labels = dict(zip((id(r) for r in runs), run_labels(runs), strict=True))
    style = line_styles(runs)
    # with --target-device: a fourth panel, the held cell's measured latency per epoch
    timed = [r for r in runs if any("nb201_latency_ms" in m for m in r.metrics)]
    panels = len(BENCHMARK) + (1 if timed else 0)
    with matplotlib.rc_context(RC):
        fig = _new_figure(4.2 * panels + 1.8, 3.6)
        axes = fig.subplots(1, panels, squeeze=False)[0]
        if timed:
            _latency_panel(axes[-1], timed, labels, style)
        for ax, (key, title) in zip(axes, BENCHMARK):
            for run in runs:
                points = [(m["epoch"] + 1, m[key]) for m in run.metrics if key in m]
                ax.plot(*zip(*points), **style[id(run)], label=labels[id(run)])
            ax.axhline(best(key.split("_")[1])[key.removeprefix("nb201_")], color="0.4",
                       linestyle="--", linewidth=1, label="best cell of the benchmark")
            ax.set_xlabel("search epoch")
            ax.set_ylabel("test accuracy of the cell held (%)")
            ax.set_title(f"NAS-Bench-201 ground truth: {title}")
            ax.grid(alpha=0.3)
        handles, names = axes[0].get_legend_handles_labels()  # runs and the best cell
        axes[-1].legend(handles, names, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                        frameon=False, ncols=1 if len(runs) <= 14 else 2)
    return fig


def _latency_panel(ax: Any, runs: Sequence[Run], labels: dict[int, str],
                   style: dict[int, dict[str, Any]]) -> None:
    """Measured latency on the target device of the cell each search held, per epoch, and
    each run's latency budget (dashed)."""
    devices = sorted({str(r.config.get("target_device")) for r in runs})
    for run in runs:
        points = [(m["epoch"] + 1, m["nb201_latency_ms"]) for m in run.metrics
                  if "nb201_latency_ms" in m]
        ax.plot(*zip(*points), **style[id(run)], label=labels[id(run)])
        target = run.config.get("latency_target")
        if isinstance(target, int | float):
            ax.axhline(target, color=style[id(run)]["color"], linestyle="--", linewidth=0.8)
    ax.set_xlabel("search epoch")
    ax.set_ylabel(f"measured latency on {', '.join(devices)} (ms)")
    ax.set_title("latency of the cell held (dashed: budget)")
    ax.grid(alpha=0.3)


def plot_benchmark(runs: Sequence[Run], out_dir: str | os.PathLike[str],
                   stem: str = "nb201-vs-epoch", formats: Sequence[str] = FORMATS) -> list[Path]:
    """``nb201-vs-epoch.<fmt>``: ground truth of the cells the searches held, per epoch."""
    return save_figure(benchmark_figure(runs), Path(out_dir) / stem, formats)


def _metric(run: Run) -> str:
    return "valid_ppl" if run.task == "lm" else "valid_acc"


def plot_accuracy_vs_time(runs: Sequence[Run], out_dir: str | os.PathLike[str],
                          stem: str = "valid-vs-time",
                          formats: Sequence[str] = FORMATS) -> list[Path]:
    """``valid-vs-time.<fmt>``: Figure 3 of the paper for the given runs."""
    return save_figure(accuracy_vs_time_figure(runs), Path(out_dir) / stem, formats)


# --- model size and accuracy against λ ---------------------------------------------------------

def lambda_points(runs: Sequence[Run]) -> dict[str, dict[str, list[tuple[float, float]]]]:
    """``{strategy: {"params": [(λ, M)], "metric": [(λ, acc% or ppl)]}}`` per finished run."""
    out: dict[str, dict[str, list[tuple[float, float]]]] = {}
    for run in runs:
        lam = run.lambda_params
        if lam is None:
            continue
        entry = out.setdefault(run.strategy, {"params": [], "metric": []})
        params = eval_params_m(run)
        if params is not None:
            entry["params"].append((lam, params))
        value = final_metric(run, _metric(run).replace("valid", "test"))
        if value is not None:
            entry["metric"].append((lam, value * (100.0 if run.task == "cnn" else 1.0)))
    return out


def mean_by_lambda(points: Sequence[tuple[float, float]]) -> tuple[list[float], list[float]]:
    """Sorted distinct λ and the mean value over the runs (seeds) at each."""
    groups: dict[float, list[float]] = {}
    for lam, value in points:
        groups.setdefault(lam, []).append(value)
    lams = sorted(groups)
    return lams, [mean(groups[lam]) for lam in lams]


def lambda_figure(runs: Sequence[Run]) -> Figure:
    """Two panels (parameters, accuracy) against λ; a mean line per strategy over the seeds,
    with each run's value as a faint dot so the spread stays visible.
    """
    with_lambda = [r for r in runs if r.lambda_params is not None]
    if not with_lambda:
        raise NaspError("none of the runs has a regularizer weight λ (config.json lambda_cost)",
                        "pass search runs made with --lambda-params, e.g. a NASP λ sweep")
    if len({r.task for r in with_lambda}) > 1:
        raise NaspError("the λ plot got both CNN and language-model runs",
                        "plot one task's λ sweep at a time")
    data = lambda_points(with_lambda)
    if not any(d["params"] or d["metric"] for d in data.values()):
        raise NaspError(
            "the runs with a λ have no result.json eval_params_m or retrained test metric",
            "score them with `nasp compare` (final_test_*), or wait for them to finish")
    lm = with_lambda[0].task == "lm"
    lams = sorted({r.lambda_params for r in with_lambda if r.lambda_params is not None})
    with matplotlib.rc_context(RC):
        fig = _new_figure(9.5, 3.8)
        ax_params, ax_metric = fig.subplots(1, 2)
        for ax, key, ylabel in ((ax_params, "params", "parameters (M)"),
                                (ax_metric, "metric",
                                 "test perplexity, retrained" if lm
                                 else "test accuracy, retrained (%)")):
            for k, (strategy, entry) in enumerate(data.items()):
                points = entry[key]
                if not points:
                    continue
                color = f"C{k % 10}"
                ax.scatter([p[0] for p in points], [p[1] for p in points], color=color,
                           alpha=0.35, s=14, label=f"{strategy} (runs)")
                xs, ys = mean_by_lambda(points)
                ax.plot(xs, ys, color=color, marker="o", label=f"{strategy} (mean)")
            _lambda_axis(ax, lams)
            ax.set_ylabel(ylabel)
            ax.grid(alpha=0.3)
            if ax.has_data():
                ax.legend()
            else:
                ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
        ax_params.set_title("model size vs. λ")
        ax_metric.set_title(("test perplexity" if lm else "test accuracy") + " vs. λ")
    return fig


def _lambda_axis(ax, lams: list[float]) -> None:
    """Log scale once λ spans a decade, symlog if λ=0 is among them, else linear."""
    positive = [x for x in lams if x > 0]
    if len(positive) >= 2 and max(positive) / min(positive) >= 10:
        if min(lams) <= 0:
            ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xscale("log")
    ax.set_xlabel("λ (lambda_cost)")


def plot_lambda(runs: Sequence[Run], out_dir: str | os.PathLike[str], stem: str = "lambda",
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """``lambda.<fmt>``: Figure 2 of the paper for a λ sweep."""
    return save_figure(lambda_figure(runs), Path(out_dir) / stem, formats)


def lambdas_differ(runs: Sequence[Run]) -> bool:
    """True when the runs span at least two λ values, i.e. a λ plot says something."""
    values = {r.lambda_params for r in runs if r.lambda_params is not None}
    return len({v for v in values if not math.isnan(v)}) >= 2
