"""The paper's figures from run folders: architecture weights (Fig. 4), accuracy against wall
time (Fig. 3) and model size / accuracy against the regularizer weight λ (Fig. 2).

Every figure is built by a ``*_figure`` function that returns a matplotlib ``Figure`` (so tests
and the HTML report can inspect or embed it) and saved by a ``plot_*`` function that writes one
file per format and returns the paths. Figures are drawn on an explicit Agg canvas, never through
pyplot: nothing here needs a display, changes the process-wide backend of a notebook that imports
nasp, or leaks figures into pyplot's registry when many runs are plotted.
"""

from __future__ import annotations

import io
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from statistics import mean

import matplotlib
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from nasp.errors import NaspError
from nasp.viz.runs import Run, eval_params_m, final_metric, run_labels

FORMATS = ("png", "svg")
# Text stays text in SVG output: searchable, selectable, and checkable by tests.
_RC = {"svg.fonttype": "none", "font.size": 9, "axes.titlesize": 9, "legend.fontsize": 8}


def _new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    fig = Figure(figsize=(width, height), layout=layout)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig: Figure, stem: str | os.PathLike[str],
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """Write ``stem.<fmt>`` for each format (creating the folder) and return the paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    paths = []
    engine = fig.get_layout_engine()
    try:
        with matplotlib.rc_context(_RC):
            for fmt in formats:
                path = stem.with_name(f"{stem.name}.{fmt}")
                fig.savefig(path, format=fmt, dpi=150, metadata=_metadata(fmt))
                paths.append(path)
                # The layout is solved; re-solving it for every format costs as much as a draw.
                fig.set_layout_engine("none")
    finally:
        fig.set_layout_engine(engine)
    return paths


def figure_svg(fig: Figure) -> str:
    """The figure as SVG text without the XML prolog, ready to inline in HTML."""
    buf = io.StringIO()
    with matplotlib.rc_context(_RC):
        fig.savefig(buf, format="svg", metadata=_metadata("svg"))
    text = buf.getvalue()
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text)
    return re.sub(r"<metadata>.*?</metadata>\s*", "", text, flags=re.S)


def _metadata(fmt: str) -> dict[str, str | None]:
    # No timestamps: the same run folder gives byte-identical figures.
    return {"Date": None} if fmt == "svg" else {}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "x"


# --- architecture weights ----------------------------------------------------------------------

def input_label(cell: str, j: int, inputs: int) -> str:
    """The name a cell diagram gives state ``j``: c_{k-2}/c_{k-1} or a node number."""
    if cell == "recurrent":
        return f"node {j}"
    if j < inputs:
        return ("c_{k-2}", "c_{k-1}")[j] if inputs == 2 else f"input {j}"
    return f"node {j - inputs}"


def edge_title(cell: str, node: int, j: int, inputs: int) -> str:
    """Panel title of edge (node, input), numbered as in the cell diagrams."""
    shown = node + 1 if cell == "recurrent" else node
    return f"node {shown} ← {input_label(cell, j, inputs)}"


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
    with matplotlib.rc_context(_RC):
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
    # A comparison holds strategies x seeds runs: one colour per strategy and one marker / dash
    # per repeat keeps 21 lines readable where a colour per run would cycle and repeat.
    strategies = list(dict.fromkeys(r.strategy for r in runs))
    colours = {name: f"C{i % 10}" for i, name in enumerate(strategies)}
    repeat: dict[int, int] = {}  # the how-manieth run of its strategy
    seen: dict[str, int] = {}
    for run in runs:
        repeat[id(run)] = seen.get(run.strategy, 0)
        seen[run.strategy] = repeat[id(run)] + 1
    markers, dashes = "os^Dvx*P", ("-", "--", ":", "-.")
    with matplotlib.rc_context(_RC):
        fig = _new_figure(5.5 * len(panels) + (1.6 if len(runs) > 1 else 0.0), 3.8)
        axes = fig.subplots(1, len(panels), squeeze=False)[0]
        for ax, (task, task_runs) in zip(axes, panels, strict=True):
            metric = "valid_ppl" if task == "lm" else "valid_acc"
            for run in task_runs:
                xs, ys = _time_series(run, metric)
                if not xs:
                    raise NaspError(f"{run.path / 'metrics.jsonl'} has no {metric} with a time",
                                    "each line needs wall_time (or epoch_time) and " + metric)
                k = repeat[id(run)]
                ax.plot([x / scale for x in xs], ys, color=colours[run.strategy],
                        marker=markers[k % len(markers)], markersize=3,
                        linestyle=dashes[k % len(dashes)], label=labels[id(run)])
            ax.set_xlabel(f"wall-clock time ({unit})")
            ax.set_ylabel("validation perplexity" if task == "lm" else "validation accuracy (%)")
            ax.set_title("validation perplexity vs. search time" if task == "lm"
                         else "validation accuracy vs. search time")
            ax.grid(alpha=0.3)
            ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
                      ncols=1 if len(task_runs) <= 14 else 2)
    return fig


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
        value = final_metric(run, _metric(run))
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
        raise NaspError("none of the runs has a regularizer weight λ (config.json lambda_params)",
                        "pass search runs made with --lambda-params, e.g. a NASP λ sweep")
    if len({r.task for r in with_lambda}) > 1:
        raise NaspError("the λ plot got both CNN and language-model runs",
                        "plot one task's λ sweep at a time")
    data = lambda_points(with_lambda)
    if not any(d["params"] or d["metric"] for d in data.values()):
        raise NaspError(
            "the runs with a λ have no result.json eval_params_m or validation metric",
            "wait for the searches to finish (result.json is written at the end)")
    lm = with_lambda[0].task == "lm"
    lams = sorted({r.lambda_params for r in with_lambda if r.lambda_params is not None})
    with matplotlib.rc_context(_RC):
        fig = _new_figure(9.5, 3.8)
        ax_params, ax_metric = fig.subplots(1, 2)
        for ax, key, ylabel in ((ax_params, "params", "parameters (M)"),
                                (ax_metric, "metric",
                                 "validation perplexity" if lm else "validation accuracy (%)")):
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
        ax_metric.set_title(("validation perplexity" if lm else "validation accuracy") + " vs. λ")
    return fig


def _lambda_axis(ax, lams: list[float]) -> None:
    """Log scale once λ spans a decade, symlog if λ=0 is among them, else linear."""
    positive = [x for x in lams if x > 0]
    if len(positive) >= 2 and max(positive) / min(positive) >= 10:
        if min(lams) <= 0:
            ax.set_xscale("symlog", linthresh=min(positive))
        else:
            ax.set_xscale("log")
    ax.set_xlabel("λ (lambda_params)")


def plot_lambda(runs: Sequence[Run], out_dir: str | os.PathLike[str], stem: str = "lambda",
                formats: Sequence[str] = FORMATS) -> list[Path]:
    """``lambda.<fmt>``: Figure 2 of the paper for a λ sweep."""
    return save_figure(lambda_figure(runs), Path(out_dir) / stem, formats)


def lambdas_differ(runs: Sequence[Run]) -> bool:
    """True when the runs span at least two λ values, i.e. a λ plot says something."""
    values = {r.lambda_params for r in runs if r.lambda_params is not None}
    return len({v for v in values if not math.isnan(v)}) >= 2
