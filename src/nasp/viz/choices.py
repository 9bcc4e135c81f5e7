"""The architecture of a search on a user's own model as one picture: a choice-by-candidate heat
map (what a cell diagram is for the built-in spaces).

One row per label: a ``Choice``'s candidates, or an ``InputChoice``'s inputs (the weight of
"pass"). Colour is the strategy's final architecture weight (NASP's A, DARTS's softmax, ...,
``plots.SUMMARY_MATRICES``), scaled per row so rows of different strategies read alike; the
chosen candidates and inputs (arch.json) are framed and named in bold. A search with many
choices stays one compact figure instead of a figure per label and epoch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

from nasp.errors import NaspError
from nasp.viz.figures import FORMATS, RC, save_figure
from nasp.viz.plots import SUMMARY_MATRICES, _new_figure
from nasp.viz.runs import Run

INPUT_OPS = ["pass", "none"]  # the ops arch.jsonl records for an InputChoice's edges


def choice_rows(run: Run) -> tuple[str, list[tuple[str, list[str], list[float], set[int]]]]:
    """(matrix name, rows): per label its column names, final weights and chosen columns."""
    run.require("arch.jsonl")
    last = run.arch[-1].get("cells") or {}
    if not last:
        raise NaspError(f"{run.path / 'arch.jsonl'} records no choices",
                        "pass the run folder of a search of your own model")
    names = set().union(*((data.get("weights") or {}).keys() for data in last.values()))
    name = next((n for n in SUMMARY_MATRICES if n in names), sorted(names)[0])
    chosen = run.own_arch or {}
    rows = []
    for label, data in last.items():
        matrix = (data.get("weights") or {}).get(name)
        if matrix is None:
            continue
        ops = list(data["ops"])
        if ops == INPUT_OPS:  # an InputChoice: one edge per input, weight of "pass"
            cols = [f"input {j}" for j in range(len(matrix))]
            values = [float(row[0]) for row in matrix]
            picked = set(chosen.get(label, [])) if isinstance(chosen.get(label), list) else set()
        else:
            cols, values = ops, [float(v) for v in matrix[0]]
            picked = {ops.index(chosen[label])} if chosen.get(label) in ops else set()
        rows.append((label, cols, values, picked))
    return name, rows


def choices_figure(run: Run) -> Figure:
    name, rows = choice_rows(run)
    width_cols = max(len(cols) for _, cols, _, _ in rows)
    with matplotlib.rc_context(RC):
        width = 1.6 + 1.05 * width_cols + 0.8
        height = 0.42 * len(rows) + 1.3
        fig = _new_figure(width, height)
        ax = fig.subplots()
        cmap = matplotlib.colormaps["Blues"]
        for r, (_label, cols, values, picked) in enumerate(rows):
            lo, hi = min(values), max(values)
            for c, (col, v) in enumerate(zip(cols, values, strict=True)):
                shade = 0.15 + 0.7 * ((v - lo) / (hi - lo) if hi > lo else 1.0)
                ax.add_patch(Rectangle((c, r), 1, 1, facecolor=cmap(shade),
                                       edgecolor="#222" if c in picked else "white",
                                       linewidth=2.0 if c in picked else 0.8))
                ax.text(c + 0.5, r + 0.5, f"{col}\n{v:.3g}", ha="center", va="center",
                        fontsize=7, color="white" if shade > 0.6 else "#1a1a1a",
                        fontweight="bold" if c in picked else "normal")
        ax.set_xlim(0, width_cols)
        ax.set_ylim(len(rows), 0)
        ax.set_yticks([r + 0.5 for r in range(len(rows))], [label for label, *_ in rows])
        ax.set_xticks([])
        ax.tick_params(length=0)
        for side in ("top", "right", "bottom", "left"):
            ax.spines[side].set_visible(False)
        ax.set_title(f"{run.name} ({run.strategy}): final {name} per choice\n(colour scaled "
                     "per row; framed, bold: the architecture found)")
    return fig


def plot_choices(run: Run, out_dir: str | os.PathLike[str],
                 formats: Sequence[str] = FORMATS) -> list[Path]:
    """``choices.<fmt>``: the heat map of a search of the user's own model."""
    return save_figure(choices_figure(run), Path(out_dir) / "choices", formats)
