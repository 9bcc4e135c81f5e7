"""The strategy comparison table (the paper's Tables 1-3) from several run folders.

Runs are grouped by ``config.json`` strategy, in the order the strategies first appear, so a
table lists methods the way the user listed the runs; when CNN and language-model runs are mixed
the task is part of the group ("nasp (lm)"), since averaging across tasks means nothing.

Two accuracies, never mixed up: the **held-out test accuracy** (perplexity) of each final
architecture retrained from scratch (``final_test_*``, written by ``nasp compare``; data no
strategy has seen), and the **search-time validation accuracy** of whatever network the strategy
evaluated during its search (``search_valid_*``; DARTS's softmax mixture, ASAP's partly pruned
mixture, NASP's network under Ā, random search's chosen candidate - the footnote names each). A
run that was not retrained has no test accuracy: the cell stays empty rather than falling back to
the search-time figure. Both are mean ± sample standard deviation over the group's runs
(seeds). The standard deviation of a single run is undefined, not zero: it is
``None`` in the rows and CSV and shown as "–", so one seed is never mistaken for a perfectly
stable method. Every other column (size,
times, memory) is the mean over the runs that report it.

Rows hold raw numbers in the run folder's units (accuracies as fractions, seconds, MB); only
:func:`to_markdown` and :func:`to_html` format them (accuracy in %).
"""

from __future__ import annotations

import csv
import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import mean, stdev
from typing import Any

from nasp.viz.runs import Run, eval_params_m, final_metric, number, search_metric

PHASES = ("time_arch", "time_forward", "time_backward")
FIELDS = (
    "strategy", "runs", "test_acc_mean", "test_acc_std", "test_ppl_mean", "test_ppl_std",
    "search_acc_mean", "search_acc_std", "search_ppl_mean", "search_ppl_std", "search_network",
    "nb201_cifar10_mean", "nb201_cifar10_std", "nb201_cifar100_mean", "nb201_cifar100_std",
    "nb201_imagenet16_mean", "nb201_imagenet16_std",
    "target_device", "nb201_latency_mean", "nb201_latency_std", "latency_target_ms",
    "latency_pred_mean", "latency_met",
    "params_m", "search_time_s", "time_arch_s", "time_forward_s", "time_backward_s",
    "peak_mem_mb", "environment",
)
# NAS-Bench-201's ground truth of the final cell (result.json, percent): column -> header
GROUND_TRUTH = {"cifar10": "NB201 CIFAR-10 (%)", "cifar100": "NB201 CIFAR-100 (%)",
                "imagenet16": "NB201 ImageNet16-120 (%)"}
SPLITS_NOTE = (
    "Test: each final architecture retrained from scratch on the weight split and scored on "
    "the held-out test set, which no search sees. Search-time: the per-epoch validation metric "
    "on the architecture split (the split the architecture was optimised on) of the network "
    "named in the notes, not a score of the genotype.")


def search_time_s(run: Run) -> float | None:
    """result.json ``search_time_s``, else the last epoch's cumulative ``wall_time``."""
    value = number(run.result.get("search_time_s"))
    if value is None and run.metrics:
        value = number(run.metrics[-1].get("wall_time"))
    if value is None:
        times = [number(m.get("epoch_time")) for m in run.metrics]
        value = sum(t for t in times if t is not None) if any(t is not None for t in times) \
            else None
    return value


def phase_time_s(run: Run, phase: str) -> float | None:
    """Seconds in one phase over the whole run: result.json, else summed over metrics.jsonl."""
    value = number(run.result.get(phase))
    if value is None:
        per_epoch = [number(m.get(phase)) for m in run.metrics]
        if any(t is not None for t in per_epoch):
            value = sum(t for t in per_epoch if t is not None)
    return value


def peak_mem_mb(run: Run) -> float | None:
    """result.json ``peak_mem_mb``, else the largest per-epoch value (null entries skipped)."""
    value = number(run.result.get("peak_mem_mb"))
    if value is None:
        peaks = [p for p in (number(m.get("peak_mem_mb")) for m in run.metrics) if p is not None]
        value = max(peaks) if peaks else None
    return value


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return mean(present) if present else None


def _std(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return stdev(present) if len(present) >= 2 else None


def comparison_rows(runs: Sequence[Run]) -> list[dict[str, Any]]:
    """One dict per strategy with the keys in ``FIELDS`` (``None`` where nothing reports it)."""
    mixed = len({r.task for r in runs}) > 1  # a CNN and an LM search are not one method
    groups: dict[str, list[Run]] = {}
    for run in runs:
        key = f"{run.strategy} ({run.task})" if mixed else run.strategy
        groups.setdefault(key, []).append(run)
    rows = []
    for strategy, group in groups.items():
        row: dict[str, Any] = {"strategy": strategy, "runs": len(group)}
        for metric in ("acc", "ppl"):
            task = "cnn" if metric == "acc" else "lm"
            test = [final_metric(r, f"test_{metric}") if r.task == task else None for r in group]
            search = [search_metric(r, f"valid_{metric}") if r.task == task else None
                      for r in group]
            row.update({f"test_{metric}_mean": _mean(test), f"test_{metric}_std": _std(test),
                        f"search_{metric}_mean": _mean(search),
                        f"search_{metric}_std": _std(search)})
        for key in GROUND_TRUTH:
            truth = [number(r.result.get(f"nb201_{key}_test")) for r in group]
            row.update({f"nb201_{key}_mean": _mean(truth), f"nb201_{key}_std": _std(truth)})
        latency = [number(r.result.get("nb201_latency_ms")) for r in group]
        devices = sorted({str(r.result["target_device"]) for r in group
                          if r.result.get("target_device")})
        targets = sorted({t for t in (number(r.result.get("latency_target_ms")) for r in group)
                          if t is not None})
        met = [r.result.get("latency_met") for r in group
               if isinstance(r.result.get("latency_met"), bool)]
        row.update({"target_device": ", ".join(devices) or None,
                    "nb201_latency_mean": _mean(latency), "nb201_latency_std": _std(latency),
                    "latency_target_ms": ", ".join(f"{t:g}" for t in targets) or None,
                    "latency_pred_mean": _mean([number(r.result.get("latency_pred_ms"))
                                                for r in group]),
                    "latency_met": f"{sum(met)}/{len(met)}" if met else None})
        networks = {str(r.result.get("search_network")) for r in group
                    if r.result.get("search_network")}
        row.update({
            "search_network": "; ".join(sorted(networks)) or None,
            "params_m": _mean([eval_params_m(r) for r in group]),
            "search_time_s": _mean([search_time_s(r) for r in group]),
            "peak_mem_mb": _mean([peak_mem_mb(r) for r in group]),
            "environment": "; ".join(sorted({environment_of(r) for r in group})),
        })
        for phase in PHASES:
            row[f"{phase}_s"] = _mean([phase_time_s(r, phase) for r in group])
        rows.append({key: row[key] for key in FIELDS})
    return rows


def _fmt(value: float | None, digits: int, scale: float = 1.0) -> str:
    return "–" if value is None else f"{value * scale:.{digits}f}"


def _mean_std(mean_key: str, std_key: str, digits: int, scale: float) -> Callable[[dict], str]:
    def fmt(row: dict[str, Any]) -> str:
        if row[mean_key] is None:
            return "–"
        return f"{_fmt(row[mean_key], digits, scale)} ± {_fmt(row[std_key], digits, scale)}"
    return fmt


def _columns(rows: Sequence[dict[str, Any]]) -> list[tuple[str, Callable[[dict], str]]]:
    """(header, formatter) pairs; the accuracy / perplexity column only when some row has it."""
    cols: list[tuple[str, Callable[[dict], str]]] = [
        ("strategy", lambda r: str(r["strategy"])),
        ("runs", lambda r: str(r["runs"])),
    ]
    lm = any(r["test_ppl_mean"] is not None or r["search_ppl_mean"] is not None for r in rows)
    cnn = any(r["test_acc_mean"] is not None or r["search_acc_mean"] is not None for r in rows)
    if cnn or not lm:
        cols.append(("test acc, retrained (%)", _mean_std("test_acc_mean", "test_acc_std", 2,
                                                           100.0)))
        cols.append(("search-time valid acc (%)", _mean_std("search_acc_mean",
                                                             "search_acc_std", 2, 100.0)))
    if lm:
        cols.append(("test ppl, retrained", _mean_std("test_ppl_mean", "test_ppl_std", 2, 1.0)))
        cols.append(("search-time valid ppl", _mean_std("search_ppl_mean", "search_ppl_std", 2,
                                                         1.0)))
    for key, header in GROUND_TRUTH.items():
        if any(r[f"nb201_{key}_mean"] is not None for r in rows):
            cols.append((header, _mean_std(f"nb201_{key}_mean", f"nb201_{key}_std", 2, 1.0)))
    if any(r["nb201_latency_mean"] is not None for r in rows):
        devices = sorted({d for r in rows for d in str(r["target_device"] or "").split(", ")
                          if d})
        where = devices[0] if len(devices) == 1 else "the target device"
        cols.append((f"NB201 latency on {where} (ms)",
                     _mean_std("nb201_latency_mean", "nb201_latency_std", 3, 1.0)))
    if any(r["latency_met"] is not None for r in rows):
        cols += [("latency target (ms)", lambda r: r["latency_target_ms"] or "–"),
                 ("predicted latency (ms)", lambda r: _fmt(r["latency_pred_mean"], 3)),
                 ("target met (predicted)", lambda r: r["latency_met"] or "–")]
    cols += [
        ("params (M)", lambda r: _fmt(r["params_m"], 2)),
        ("search time (s)", lambda r: _fmt(r["search_time_s"], 1)),
        ("arch step (s)", lambda r: _fmt(r["time_arch_s"], 1)),
        ("weight forward (s)", lambda r: _fmt(r["time_forward_s"], 1)),
        ("weight backward (s)", lambda r: _fmt(r["time_backward_s"], 1)),
        ("peak memory (MB)", lambda r: _fmt(r["peak_mem_mb"], 0)),
    ]
    return cols


def table_cells(rows: Sequence[dict[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """Headers and formatted cell text, shared by the Markdown and HTML renderings."""
    cols = _columns(rows)
    return [h for h, _ in cols], [[fmt(r) for _, fmt in cols] for r in rows]


def environment_of(run: Run) -> str:
    """Where the run's times were measured, in one line (``nasp.device.environment``)."""
    from nasp.device import describe_environment

    env = run.result.get("environment")
    return describe_environment(env) if isinstance(env, dict) else "not recorded"


def notes(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The splits, the network each strategy's search-time metric measured, and where the
    times were measured (said loudly when the runs' environments differ)."""
    out = [SPLITS_NOTE]
    out += [f"{r['strategy']}: search-time metric of {r['search_network']}." for r in rows
            if r.get("search_network")]
    places = {e for r in rows for e in str(r.get("environment") or "").split("; ") if e}
    if len(places) == 1:
        out.append(f"Times and memory measured on: {places.pop()}.")
    elif places:
        out.append("Times and memory come from different environments, so they do not compare "
                   "across rows: " + "; ".join(f"{r['strategy']}: {r['environment']}"
                                               for r in rows) + ".")
    if any(r.get("nb201_cifar10_mean") is not None for r in rows):
        from nasp.nb201 import best

        top = best("cifar10")
        out.append("NB201: the benchmark's 200-epoch test accuracy of each final cell on its "
                   "datasets (whatever data the search used); the best cell of the benchmark, "
                   f"{top['arch']}, has {top['cifar10_test']:.2f} / {top['cifar100_test']:.2f}"
                   f" / {top['imagenet16_test']:.2f}.")
    return out


def to_markdown(rows: Sequence[dict[str, Any]]) -> str:
    """A GitHub-flavoured Markdown table; numbers right-aligned; the notes below it."""
    headers, body = table_cells(rows)
    esc = [[c.replace("|", "\\|") for c in line] for line in body]
    align = [":---" if i == 0 else "---:" for i in range(len(headers))]
    lines = ["| " + " | ".join(line) + " |" for line in (headers, align, *esc)]
    return "\n".join(lines) + "\n\n" + "".join(f"- {n}\n" for n in notes(rows))


def to_html(rows: Sequence[dict[str, Any]]) -> str:
    """An HTML ``<table>`` with every cell escaped, for the report."""
    headers, body = table_cells(rows)
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    trs = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in line) + "</tr>\n"
                  for line in body)
    items = "".join(f"<li>{html.escape(n)}</li>" for n in notes(rows))
    return (f'<table class="comparison">\n<thead><tr>{head}</tr></thead>\n'
            f"<tbody>\n{trs}</tbody>\n</table>\n<ul class=\"notes\">{items}</ul>")


def to_csv(rows: Sequence[dict[str, Any]], path: str | os.PathLike[str]) -> Path:
    """The rows unformatted (columns ``FIELDS``, empty for missing), for spreadsheets/pandas."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if row.get(k) is None else row.get(k) for k in FIELDS})
    return path
