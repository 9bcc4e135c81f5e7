"""``nasp plot``: figures from run folders, each written as PNG and SVG.

``--kind arch``: architecture weights per edge over epochs, one figure per cell type and
weights matrix (A and A_bar for NASP, alpha and softmax for DARTS...), for every search run.
``--kind time``: validation accuracy (perplexity for language models) against wall-clock time,
one line per run. ``--kind lambda``: model size and validation accuracy against the regularizer
weight λ, averaged over seeds. ``--kind nb201``: NAS-Bench-201's ground-truth accuracy of the
cell each search held, per epoch. ``--kind latency``: for searches with ``--target-device``, every
benchmark cell's measured latency against its true accuracy, the Pareto front, the budgets and
the cells found. ``--kind all`` (default) makes every figure the runs support.
With several runs, the arch figures of each go to a subfolder named after the run.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasp.cli.options import path_arg, path_text
from nasp.errors import NaspError

KINDS = ("arch", "time", "lambda", "nb201", "latency", "all")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", type=path_text,
                        help="a run folder, or a folder holding run folders (e.g. a sweep)")
    parser.add_argument("-o", "--out-dir", type=path_arg, default=Path("plots"),
                        help="folder for the figures (default: ./plots)")
    parser.add_argument("--kind", choices=KINDS, default="all",
                        help="which figures (default: all that the runs support)")
    parser.add_argument("--format", dest="formats", nargs="+", choices=("png", "svg", "pdf"),
                        default=["png", "svg"], help="file formats (default: png svg)")


def _arch_dirs(names: list[str], out_dir: Path) -> list[Path]:
    """One subfolder per run, named after it; repeated names get -2, -3..."""
    if len(names) == 1:
        return [out_dir]
    dirs, seen = [], {}
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        dirs.append(out_dir / (name if seen[name] == 1 else f"{name}-{seen[name]}"))
    return dirs


def run(args: argparse.Namespace) -> int:
    from nasp.files import check_output, output_errors

    check_output(args.out_dir, "-o", folder=True)
    with output_errors(args.out_dir):  # -o under a file or an unwritable place: one line
        return _plot(args)


def _plot(args: argparse.Namespace) -> int:
    from nasp.viz import plots
    from nasp.viz.runs import load_runs

    runs = load_runs(args.runs)
    kind, out_dir, formats = args.kind, Path(args.out_dir), tuple(args.formats)
    written: list[Path] = []
    if kind in ("arch", "all"):
        searched = [r for r in runs if r.arch]
        if kind == "arch" and not searched:
            runs[0].require("arch.jsonl")
        for r in runs:
            if not r.arch:
                print(f"note: {r.path} has no arch.jsonl (not a search run); no arch figures")
        for r, folder in zip(searched, _arch_dirs([r.name for r in searched], out_dir),
                             strict=True):
            if r.own_model:  # a user model's choices: one heat map, not a figure per label
                from nasp.viz.choices import plot_choices

                written += plot_choices(r, folder, formats)
            else:
                written += plots.plot_arch_weights(r, folder, formats)
    if kind in ("time", "all"):
        timed = [r for r in runs if r.metrics]
        if kind == "time" and len(timed) < len(runs):
            next(r for r in runs if not r.metrics).require("metrics.jsonl")
        if timed:
            written += plots.plot_accuracy_vs_time(timed, out_dir, formats=formats)
    if kind == "lambda" or (kind == "all" and plots.lambdas_differ(runs)):
        written += plots.plot_lambda(runs, out_dir, formats=formats)
    if kind == "nb201" or (kind == "all" and plots.benchmark_runs(runs)):
        written += plots.plot_benchmark(runs, out_dir, formats=formats)
    from nasp.viz.latency_plot import latency_runs, plot_latency

    if kind == "latency" or (kind == "all" and latency_runs(runs)):
        written += plot_latency(runs, out_dir, formats=formats)
    if not written:
        raise NaspError("nothing to plot for these runs",
                        "pass search run folders with metrics.jsonl and arch.jsonl")
    for path in written:
        print(path)
    return 0
