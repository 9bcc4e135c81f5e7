"""One self-contained HTML page summarising several run folders.

The page must open offline and survive being mailed or attached to an issue, so everything is
inside it: CSS in a ``<style>`` element, figures as inline SVG (matplotlib and Graphviz both
write SVG, which stays sharp and keeps text searchable), no scripts, fonts or links outside the
page. Every string that comes from a run folder is HTML-escaped.

A problem with one figure (a run still in progress, no ``dot`` installed) becomes a visible note
in its place rather than failing the whole report: a partial report is more useful than none.
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
from nasp.viz.cells import dot_available, dot_source, genotype_text, render_svg
from nasp.viz.plots import (
    accuracy_vs_time_figure,
    arch_matrices,
    arch_weights_figure,
    figure_svg,
    lambda_figure,
    lambdas_differ,
)
from nasp.viz.runs import Run, load_runs
from nasp.viz.tables import comparison_rows, to_html

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Helvetica, Arial, sans-serif;
       margin: 2em auto; max-width: 1200px; padding: 0 1em; color: #222; }
h1, h2, h3 { font-weight: 600; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 1em 0; }
th, td { border: 1px solid #ccc; padding: .3em .6em; }
td { text-align: right; } td:first-child { text-align: left; }
th { background: #f3f3f3; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: .1em 1em; }
dl.facts dt { font-weight: 600; } dl.facts dd { margin: 0; }
figure { margin: 1em 0; overflow-x: auto; }
figure svg { max-width: 100%; height: auto; }
figcaption { color: #555; font-size: .9em; }
.note { background: #fff6d6; border-left: 4px solid #e0b800; padding: .4em .8em; }
pre { background: #f6f6f6; padding: .6em; overflow-x: auto; }
"""

_CONFIG_KEYS = ("command", "task", "strategy", "space", "data", "seed", "lambda_params",
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
    body = "".join(f"<dt>{_e(k)}</dt><dd>{_e(_show(v))}</dd>" for k, v in items)
    return f'<dl class="facts">{body}</dl>'


def _show(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    return str(value)


def _cells_html(run: Run, index: int) -> str:
    if run.genotype is None:
        return _note(f"no genotype: {run.path / 'genotype.json'} is missing "
                     "(train runs and unfinished searches have none)")
    source = dot_source(run.genotype, source=str(run.path / "genotype.json"))
    if not dot_available():
        return (_note("Graphviz 'dot' is not installed, so the cells are listed as text "
                      "(apt-get install graphviz, then re-run nasp report, for diagrams).")
                + f"<pre>{_e(genotype_text(run.genotype))}</pre>")
    svg = _scope_ids(render_svg(source), f"run{index}-cell-")
    return _figure(svg, f"{run.name}: cells of the final architecture")


def _arch_html(run: Run, index: int) -> str:
    if not run.arch:
        return _note(f"no architecture history: {run.path / 'arch.jsonl'} is missing "
                     "(only nasp search writes it)")
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
            "validation accuracy (perplexity for language models) against cumulative "
            "wall-clock time, one line per run")))
    else:
        parts.append(_note("no run has metrics.jsonl yet, so there is no time plot"))
    if lambdas_differ(runs):
        parts.append(_safely(lambda: _figure(
            _scope_ids(figure_svg(lambda_figure(runs)), "lambda-"),
            "evaluation-network size and final validation accuracy against the regularizer "
            "weight λ: dots are runs, lines the mean over seeds")))
    return "\n".join(parts)


def render_report(runs: Sequence[Run], title: str = "nasp report") -> str:
    """The report's HTML text for already loaded runs."""
    toc = "".join(f'<li><a href="#run-{i}">{_e(r.name)}</a> ({_e(r.strategy)})</li>'
                  for i, r in enumerate(runs))
    sections = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        f'<head>\n<meta charset="utf-8">\n<title>{_e(title)}</title>\n<style>{_CSS}</style>\n'
        "</head>",
        "<body>",
        f"<h1>{_e(title)}</h1>",
        f"<p>{len(runs)} run folder{'s' if len(runs) != 1 else ''}:</p>\n<ul>{toc}</ul>",
        "<h2>Comparison</h2>",
        _safely(lambda: to_html(comparison_rows(runs))),
        "<p>Accuracy: final architecture, mean ± sample standard deviation over the runs of "
        "a strategy (– for a single run). Other columns: mean over runs.</p>",
        _across_html(runs),
    ]
    for i, run in enumerate(runs):
        sections += [
            f'<h2 id="run-{i}">{_e(run.name)}</h2>',
            f"<p><code>{_e(run.path)}</code></p>",
            _facts(run.config, _CONFIG_KEYS),
            _facts(run.result, _RESULT_KEYS),
            "<h3>Cells</h3>",
            _safely(lambda run=run, i=i: _cells_html(run, i)),
            "<h3>Architecture weights</h3>",
            _safely(lambda run=run, i=i: _arch_html(run, i)),
        ]
    sections += ["</body>", "</html>"]
    return "\n".join(s for s in sections if s) + "\n"


def write_report(run_dirs: Sequence[str | os.PathLike[str]], out_html: str | os.PathLike[str],
                 title: str = "nasp report") -> Path:
    """Write the report for ``run_dirs`` (run folders or folders holding them) to ``out_html``."""
    runs = load_runs(run_dirs)
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_report(runs, title), encoding="utf-8")
    return out
