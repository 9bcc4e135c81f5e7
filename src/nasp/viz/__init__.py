"""Plots, tables, cell diagrams and HTML reports, read from run folders only.

Nothing here imports the training code or torch: a run folder (docs/run-folder.md) copied
from another machine is all it needs. ``plots``, ``cell_figure`` and ``report`` import
matplotlib, so they are not imported by this package's ``__init__``; import them where they
are used.

- ``runs``: :func:`load_run` / :func:`load_runs` read folders into :class:`Run`.
- ``plots``: architecture weights, accuracy vs. time, size and accuracy vs. λ (PNG + SVG).
- ``cells``: cell diagrams of a genotype (matplotlib, or Graphviz DOT where wanted).
- ``cell_layout``: the layered layout of one cell; ``cell_figure``: drawing it.
- ``tables``: the strategy comparison table (Markdown, CSV, HTML).
- ``report``: one self-contained HTML page.
"""

from nasp.viz.runs import Run, load_run, load_runs

__all__ = ["Run", "load_run", "load_runs"]
