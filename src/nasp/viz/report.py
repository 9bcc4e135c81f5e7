"""One self-contained HTML page summarising several run folders.

The page must open offline and survive being mailed or attached to an issue, so everything is
inside it: CSS in a ``<style>`` element, figures as inline SVG (sharp, and its text stays
searchable), no scripts, fonts or links outside the page. Every string that comes from a run
folder is HTML-escaped. It must also stay small enough to open and send with many runs in it,
so by default a strategy gets one architecture figure over its seeds and a run a compact
section (facts and cell diagram); ``full`` adds every run's per-epoch figures.

A problem with one figure (a run still in progress, a damaged file) becomes a visible note in
its place rather than failing the whole report: a partial report is more useful than none.
"""

from __future__ import annotations

import html
import json
import os
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from nasp.errors import NaspError
from nasp.viz.cell_figure import cell_figure
from nasp.viz.cells import cell_graphs
from nasp.viz.choices import choices_figure
from nasp.viz.figures import figure_svg
from nasp.viz.plots import (
    accuracy_vs_time_figure,
    arch_matrices,
    arch_summary_figure,
    arch_weights_figure,
    benchmark_figure,
    benchmark_runs,
    lambda_figure,
    lambdas_differ,
)
from nasp.viz.runs import Run, load_runs
from nasp.viz.tables import comparison_rows, to_html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1, h2, h3, h4 { font-weight: 600; }
h3 { margin-top: 1.6em; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; }
td { text-align: right; white-space: nowrap; } td:first-child { text-align: left; }
th { background: #f3f3f3; }
dl.facts { display: flex; flex-wrap: wrap; gap: .2em 1.4em; margin: .4em 0; }
dl.facts div { display: flex; gap: .4em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
figure { margin: 1em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9em; }
.note { background: #fff6d6; border-left: 4px solid #e0b800; padding: .4em .8em; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; }
"""

_CONFIG_KEYS = ("command", "task", "strategy", "space", "data", "seed", "lambda_cost",
                "preset", "epochs")
_RESULT_KEYS = ("valid_acc", "final_valid_acc", "valid_ppl", "test_acc", "test_ppl",
                "eval_params_m", "params_m", "search_time_s", "peak_mem_mb")


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _note(text: str) -> str:
    return f'<p class="note">{_e(text)}</p>'


def _figure(svg: str, caption: str) -> str:
    return f"<figure>\n{svg}\n<figcaption>{_e(caption)}</figcaption>\n</figure>"


def _scope_ids(svg: str, prefix: str) -> str:
    """Prefix every id (and reference to it) so several inlined SVGs keep ids unique.

    The namespace declarations go too: the HTML parser supplies them, and without them the page
    holds no URL at all, which makes "references nothing external" checkable with grep.
    """
    svg = re.sub(r'\s+xmlns(:\w+)?="[^"]*"', "", svg)
    svg = re.sub(r'\bid="([^"]+)"', lambda m: f'id="{prefix}{m.group(1)}"', svg)
    svg = re.sub(r'url\(#([^)]+)\)', lambda m: f"url(#{prefix}{m.group(1)})", svg)
    return re.sub(r'href="#([^"]+)"', lambda m: f'href="#{prefix}{m.group(1)}"', svg)


def _safely(build: Callable[[], str]) -> str:
    try:
        return build()
    except NaspError as e:
        return _note(str(e))


def _facts(data: dict[str, Any], keys: Sequence[str]) -> str:
    items = [(k, data[k]) for k in keys if k in data and data[k] is not None]
    if not items:
        return ""
    body = "".join(f"<div><dt>{_e(k)}</dt><dd>{_e(_show(v))}</dd></div>" for k, v in items)
    return f'<dl class="facts">{body}</dl>'


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _cells_html(run: Run, index: int) -> str:
    if run.own_model:  # a user model's choices in place of cell diagrams
        if not run.arch:
            return _note(f"no architecture history: {run.path / 'arch.jsonl'} is missing")
        svg = _scope_ids(figure_svg(choices_figure(run)), f"run{index}-choices-")
        return _figure(svg, f"{run.name}: final architecture weight per choice and candidate; "
                            "framed: the architecture found (arch.json)")
    if run.genotype is None:
        return _note(f"no genotype: {run.path / 'genotype.json'} is missing "
                     "(train runs and unfinished searches have none)")
    graphs = cell_graphs(run.genotype, source=str(run.path / "genotype.json"))
    svg = _scope_ids(figure_svg(cell_figure(graphs)), f"run{index}-cell-")
    return _figure(svg, f"{run.name}: cells of the final architecture")


def _arch_html(run: Run, index: int) -> str:
    if not run.arch:
        return _note(f"no architecture history: {run.path / 'arch.jsonl'} is missing "
                     "(only nasp search writes it)")
    if run.own_model:
        return _note("a search of your own model: its choices are the heat map above; "
                     "`nasp plot RUN` draws it as a file")
    parts = []
    for cell, name in arch_matrices(run):
        svg = figure_svg(arch_weights_figure(run, cell, name))
        parts.append(_figure(_scope_ids(svg, f"run{index}-{cell}-{name}-"),
                             f"{run.name}: {cell} cell, {name} per edge over epochs"))
    return "\n".join(parts)


def _across_html(runs: Sequence[Run]) -> str:
    parts = []
    timed = [r for r in runs if r.metrics]
    if timed:
        parts.append(_safely(lambda: _figure(
            _scope_ids(figure_svg(accuracy_vs_time_figure(timed)), "time-"),
            "search-time validation accuracy (perplexity for language models) of the network "
            "each strategy evaluates during its search (named under the table) against "
            "cumulative wall-clock time, one line per run")))
    else:
        parts.append(_note("no run has metrics.jsonl yet, so there is no time plot"))
    if lambdas_differ(runs):
        parts.append(_safely(lambda: _figure(
            _scope_ids(figure_svg(lambda_figure(runs)), "lambda-"),
            "evaluation-network size and final validation accuracy against the regularizer "
            "weight λ: dots are runs, lines the mean over seeds")))
    if benchmark_runs(runs):
        parts.append(_safely(lambda: _figure(
            _scope_ids(figure_svg(benchmark_figure(runs)), "nb201-"),
            "NAS-Bench-201's 200-epoch test accuracy of the cell each search held, per epoch, "
            "on the benchmark's three datasets; dashed: the benchmark's best cell")))
    from nasp.viz.latency_plot import latency_figure, latency_runs

    if latency_runs(runs):
        parts.append(_safely(lambda: _figure(
            _scope_ids(figure_svg(latency_figure(runs)), "latency-"),
            "every NAS-Bench-201 cell's measured latency on the target device against its "
            "true CIFAR-100 accuracy (grey), the Pareto front, the latency budgets (dashed) "
            "and the cells the searches found")))
    return "\n".join(parts)


def _groups(runs: Sequence[Run]) -> dict[str, list[int]]:
    """Run indices per strategy, in order of first appearance."""
    groups: dict[str, list[int]] = {}
    for i, run in enumerate(runs):
        groups.setdefault(run.strategy, []).append(i)
    return groups


def _run_link(runs: Sequence[Run], i: int) -> str:
    run = runs[i]
    label = f"seed {run.seed}" if run.seed is not None else run.name
    return f'<a href="#run-{i}">{_e(label)}</a>'


def _strategy_html(runs: Sequence[Run], strategy: str, members: list[int], k: int) -> str:
    links = ", ".join(_run_link(runs, i) for i in members)
    group = [runs[i] for i in members]
    parts = [f'<h3 id="strategy-{k}">{_e(strategy)}</h3>',
             f"<p>{len(members)} run{'s' * (len(members) != 1)}: {links}</p>"]
    if all(r.own_model for r in group):
        parts.append(_note("searches of your own model: each run's choice-by-candidate heat "
                           "map is in its section below"))
    elif any(r.arch for r in group):
        parts.append(_safely(lambda: _figure(
            _scope_ids(figure_svg(arch_summary_figure(group)), f"strategy{k}-"),
            f"{strategy}: final architecture weights per edge and op, mean over its runs; "
            "a number marks an op that runs' genotypes kept, and counts those runs")))
    else:
        parts.append(_note("no architecture history (no arch.jsonl) in these runs"))
    return "\n".join(parts)


def _run_html(runs: Sequence[Run], i: int, full: bool) -> str:
    run = runs[i]
    parts = [f'<h3 id="run-{i}">{_e(run.name)}</h3>',
             f"<p><code>{_e(run.path)}</code></p>",
             _facts({**{k: run.config.get(k) for k in _CONFIG_KEYS},
                     **{k: run.result.get(k) for k in _RESULT_KEYS}},
                    (*_CONFIG_KEYS, *_RESULT_KEYS)),
             _safely(lambda: _cells_html(run, i))]
    if full:
        parts += ["<h4>Architecture weights</h4>", _safely(lambda: _arch_html(run, i))]
    return "\n".join(p for p in parts if p)


def render_report(runs: Sequence[Run], title: str = "nasp report", full: bool = False) -> str:
    """The report's HTML text for already loaded runs.

    By default the page stays small however many runs it covers (the README's 21-run
    comparison makes about 1.5 MB): per strategy one architecture figure over its seeds, per run
    its facts and cell diagram. ``full`` adds every run's architecture weights per epoch, four
    large figures per CNN search.
    """
    groups = _groups(runs)
    toc = "".join(
        f'<li><a href="#strategy-{k}">{_e(s)}</a>: '
        + ", ".join(_run_link(runs, i) for i in members) + "</li>"
        for k, (s, members) in enumerate(groups.items()))
    n = len(runs)
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n<style>{_CSS}</style>\n'
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>{n} run folder{'s' * (n != 1)} of {len(groups)} "
        f"strateg{'ies' if len(groups) != 1 else 'y'}:</p>\n<ul>{toc}</ul>",
        "<h2>Comparison</h2>",
        _safely(lambda: to_html(comparison_rows(runs))),
        "<p>Accuracy: final architecture, mean ± sample standard deviation over the runs of "
        "a strategy (– for a single run). Other columns: mean over runs.</p>",
        _across_html(runs),
        "<h2>Strategies</h2>",
    ]
    sections += [_strategy_html(runs, s, members, k)
                 for k, (s, members) in enumerate(groups.items())]
    sections.append("<h2>Runs</h2>")
    if not full:
        sections.append("<p>Architecture weights per epoch of each run: <code>nasp plot RUN"
                        "</code>, or this page with <code>nasp report --full</code>.</p>")
    sections += [_run_html(runs, i, full) for i in range(n)]
    sections += ["</body>", "</html>"]
    return "\n".join(s for s in sections if s) + "\n"


def write_report(run_dirs: Sequence[str | os.PathLike[str]], out_html: str | os.PathLike[str],
                 title: str = "nasp report", full: bool = False) -> Path:
    """Write the report for ``run_dirs`` (run folders or folders holding them) to ``out_html``."""
    runs = load_runs(run_dirs)
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(runs, title, full), encoding="utf-8")
    return out
