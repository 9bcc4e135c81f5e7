"""Latency-constrained search on NAS-Bench-201, scored against measured latency and accuracy.

The protocol (issue 22, after the published latency-constrained searches on this benchmark):
on each of five devices and three budgets (ms) - titan_rtx_256 18 / 21 / 25, gold_6226 8 / 11
/ 14, pixel2 14 / 18 / 22, eyeriss 5 / 7 / 9, fpga 4 / 5 / 6 - a search of the nb201 space on
the bundled data with ``--latency-target BUDGET``. The per-search budget: the ``nb201-quick``
preset (C=8, one cell per stage, 10 epochs) on all 10,000 training images of the bundled
sample (5,000 + 5,000; ``--train-samples``, the preset's own is 3,000), about three times the
preset's time. At the preset's 3,000 images the search's architecture parameters barely
separate the cheap ops, and the cells found under a budget were 10.6 points of CIFAR-100 below
the best (seed 0, 100-cell tables; see the README). Each search's cost table is fitted (``nasp
costs fit``) from 10, 100 or all measured cells of that device (the 10 and 100 cells drawn
with the search's seed). For every found cell: its measured
latency on the device, whether it meets the budget, its true CIFAR-10 / CIFAR-100 /
ImageNet16-120 accuracy; beside it the best cell of the benchmark under the same budget (the
optimum any method could reach) and the median cell under it.

Beside them, per seed, the same search without any budget: the cell the search itself finds
on the bundled data and its gap to the benchmark's best cell, which splits the budgeted gap
into what the search loses on this data anyway and what the budget adds.

Each step is reused when its output exists (``nasp search --continue``), so an interrupted run
continues. Writes ``OUT/latency_target.csv`` (one row per search), ``OUT/latency_target.md``
(the per-setting table, the summary per table size and the searches without a budget),
``OUT/latency_target_nobudget.csv`` and ``OUT/latency-vs-accuracy.png|svg``
(the cells found with the 100-cell table on each device's cloud of cells). Usage:

    python benchmarks/latency_target.py --out runs/latency-target --jobs 2
    python benchmarks/latency_target.py --out runs/lt-small --samples 100 --seeds 0 --jobs 2
    python benchmarks/latency_target.py --out runs/lt-3000 --train-samples 3000 --jobs 2
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

PROTOCOL = {"titan_rtx_256": (18, 21, 25), "gold_6226": (8, 11, 14), "pixel2": (14, 18, 22),
            "eyeriss": (5, 7, 9), "fpga": (4, 5, 6)}


def fit_table(device: str, samples: str, seed: int, path: Path) -> None:
    """``nasp costs fit`` for one device, table size and seed (reused when it exists)."""
    if path.exists():
        return
    args = ["costs", "fit", "--device-latency", device, "--seed", str(seed), "-o", str(path)]
    args += ["--samples", samples]
    subprocess.run([sys.executable, "-m", "nasp", *args], check=True,
                   stdout=subprocess.DEVNULL)


def search(job: dict, threads: int) -> float:
    """One budgeted search (``--continue``: reused or resumed when it exists); its seconds.

    A search may refuse its budget: with the table's margin for its own error (aim = budget
    less the fit's leave-one-out under-prediction), even the cheapest cell can be predicted
    above the aim (pixel2 with a 10-cell table: a 203% margin). ``nasp search`` then stops with
    an ``error:`` line naming the smallest budget it would accept; the protocol records that
    setting as a search that found no cell (it does not meet its budget) instead of stopping."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    args = ["search", "--continue", "--quiet", "--space", "nb201", "--preset", "quick",
            "--strategy", job["strategy"], "--seed", str(job["seed"]),
            "--out", str(job["run"]), *job["extra"]]
    if job["budget"] is not None:  # else the reference search without a budget
        args += ["--cost-table", str(job["table"]), "--latency-target", str(job["budget"]),
                 "--target-device", job["device"]]
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "nasp", *args], env=env,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    # the refusal nasp.strategies.build raises ("latency target T ms (aiming at ...) is below
    # what the cheapest cell ... takes"); any other failure stops the protocol with its message
    if proc.returncode == 2 and "latency target" in proc.stderr and \
            "is below what" in proc.stderr:
        job["refused"] = proc.stderr.strip().splitlines()[-1].removeprefix("error: ")
    elif proc.returncode:
        sys.stderr.write(proc.stderr)
        raise subprocess.CalledProcessError(proc.returncode, proc.args)
    return time.perf_counter() - t0


def row(job: dict) -> dict:
    from nasp.nb201.latency import under_budget

    ref = under_budget(job["device"], job["budget"], "cifar100")
    best, median = ref["best"], ref["median"]
    if job.get("refused"):
        return {"device": job["device"], "budget_ms": job["budget"], "samples": job["samples"],
                "strategy": job["strategy"], "seed": job["seed"], "cell": "",
                "predicted_ms": None, "aim_ms": None, "measured_ms": None, "meets": False,
                "cifar10": None, "cifar100": None, "imagenet16": None,
                "best_cifar100": best["cifar100_test"], "best_ms": best["latency_ms"],
                "median_cifar100": median["cifar100_test"], "cells_under_budget": ref["cells"],
                "gap_cifar100": None, "search_time_s": None, "refused": job["refused"]}
    result = json.loads((job["run"] / "result.json").read_text())
    ms = result["nb201_latency_ms"]
    return {"device": job["device"], "budget_ms": job["budget"], "samples": job["samples"],
            "strategy": job["strategy"], "seed": job["seed"], "cell": result["genotype"],
            "predicted_ms": result["latency_pred_ms"], "aim_ms": result["latency_aim_ms"],
            "measured_ms": ms, "meets": ms <= job["budget"],
            "cifar10": result["nb201_cifar10_test"], "cifar100": result["nb201_cifar100_test"],
            "imagenet16": result["nb201_imagenet16_test"],
            "best_cifar100": best["cifar100_test"], "best_ms": best["latency_ms"],
            "median_cifar100": median["cifar100_test"], "cells_under_budget": ref["cells"],
            "gap_cifar100": best["cifar100_test"] - result["nb201_cifar100_test"],
            "search_time_s": result.get("search_time_s"), "refused": ""}


def reference(job: dict) -> dict:
    """The cell a search without any budget finds (same data, seed and epochs): what the
    search itself reaches on the bundled data, scored like the budgeted cells, with its
    measured latency on each device of the protocol (``<device>_ms``)."""
    from nasp.nb201.latency import device_latency
    from nasp.nb201.strings import format_arch
    from nasp.nb201.table import best

    result = json.loads((job["run"] / "result.json").read_text())
    arch = format_arch([(op, j) for op, j in result["genotype"]["cell"]])
    top = best("cifar100")
    return {"strategy": job["strategy"], "seed": job["seed"], "cell": arch,
            "cifar10": result["nb201_cifar10_test"], "cifar100": result["nb201_cifar100_test"],
            "imagenet16": result["nb201_imagenet16_test"], "best_cifar100": top["cifar100_test"],
            "gap_cifar100": top["cifar100_test"] - result["nb201_cifar100_test"],
            **{f"{d}_ms": device_latency(arch, d) for d in PROTOCOL}}


def reference_markdown(refs: list[dict], rows: list[dict]) -> str:
    """The searches without a budget: their cells, their gap to the benchmark's best cell
    (to set beside the budgeted searches' gap to the best under each budget) and how many of
    the protocol's budgets each would meet anyway."""
    out = ["", "Without a budget (the same searches with no target: what the search reaches on "
           "the bundled data):", "",
           "| strategy | seed | cell | CIFAR-10 | CIFAR-100 | ImageNet16-120 | best of the "
           "benchmark, CIFAR-100 | gap to best | settings whose budget it meets (measured) |",
           "| :--- | ---: | :--- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    settings = list(dict.fromkeys((r["device"], r["budget_ms"]) for r in rows))
    for ref in refs:
        fits = sum(ref[f"{d}_ms"] <= b for d, b in settings)
        cell = ref["cell"].replace("|", "\\|")  # a table cell: its pipes escaped
        out.append(f"| {ref['strategy']} | {ref['seed']} | `{cell}` | "
                   f"{ref['cifar10']:.2f} | {ref['cifar100']:.2f} | {ref['imagenet16']:.2f} | "
                   f"{ref['best_cifar100']:.2f} | {ref['gap_cifar100']:.2f} | "
                   f"{fits}/{len(settings)} |")
    gap = statistics.mean(r["gap_cifar100"] for r in refs)
    out += ["", f"Mean CIFAR-100 gap of the cells found without a budget to the benchmark's "
            f"best cell: {gap:.2f} points."]
    return "\n".join(out) + "\n"


def markdown(rows: list[dict]) -> str:
    out = ["| device | budget (ms) | cells in table | runs | measured (ms) | meets | CIFAR-10 | "
           "CIFAR-100 | ImageNet16-120 | best under budget, CIFAR-100 | median under budget, "
           "CIFAR-100 | gap to best |",
           "| :--- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    keys = list(dict.fromkeys((r["device"], r["budget_ms"], r["samples"]) for r in rows))
    for device, budget, samples in keys:
        group = [r for r in rows if (r["device"], r["budget_ms"], r["samples"]) ==
                 (device, budget, samples)]

        found = [r for r in group if not r["refused"]]

        def m(k: str, found: list = found) -> str:
            return f"{statistics.mean(r[k] for r in found):.2f}" if found else "-"

        refused = len(group) - len(found)
        runs = f"{len(group)}" + (f" ({refused} refused)" if refused else "")
        out.append(f"| {device} | {budget:g} | {samples} | {runs} | "
                   f"{m('measured_ms')} | {sum(r['meets'] for r in group)}/{len(group)} | "
                   f"{m('cifar10')} | {m('cifar100')} | {m('imagenet16')} | "
                   f"{group[0]['best_cifar100']:.2f} | {group[0]['median_cifar100']:.2f} | "
                   f"{m('gap_cifar100')} |")
    out += ["", "| cells in table | searches | meet the budget (measured) | settings met on "
            "every seed | mean CIFAR-100 gap to the best under budget | mean CIFAR-100 above "
            "the median under budget |", "| ---: | ---: | ---: | ---: | ---: | ---: |"]
    for samples in dict.fromkeys(r["samples"] for r in rows):
        group = [r for r in rows if r["samples"] == samples]
        settings = {(r["device"], r["budget_ms"]) for r in group}
        every = sum(all(r["meets"] for r in group if (r["device"], r["budget_ms"]) == s)
                    for s in settings)
        found = [r for r in group if not r["refused"]]
        gap = statistics.mean(r["gap_cifar100"] for r in found) if found else float("nan")
        above = statistics.mean(r["cifar100"] - r["median_cifar100"] for r in found) \
            if found else float("nan")
        refused = len(group) - len(found)
        searches = f"{len(group)}" + (f" ({refused} refused the budget)" if refused else "")
        out.append(f"| {samples} | {searches} | {sum(r['meets'] for r in group)}/{len(group)}"
                   f" | {every}/{len(settings)} | {gap:.2f} | {above:+.2f} |")
    return "\n".join(out) + "\n"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--devices", default=",".join(PROTOCOL),
                   help="devices of the protocol to run (default: all five)")
    p.add_argument("--samples", default="10,100,all",
                   help="measured cells the table is fitted from (default: 10,100,all)")
    p.add_argument("--seeds", default="0,1", help="search (and sampling) seeds (default: 0,1)")
    p.add_argument("--strategies", default="nasp", help="default: nasp")
    p.add_argument("--jobs", type=int, default=1, help="searches at once, one process each")
    p.add_argument("--train-samples", type=int, default=10000,
                   help="training images of each search (default: 10000, the bundled sample's "
                   "all; the nb201-quick preset's own is 3000)")
    p.add_argument("--search-options", default="",
                   help="extra nasp search options, e.g. '--epochs 5'")
    args = p.parse_args()
    devices = args.devices.split(",")
    unknown = sorted(set(devices) - set(PROTOCOL))
    if unknown:
        p.error(f"not devices of the protocol: {', '.join(unknown)}")
    seeds = [int(s) for s in args.seeds.split(",")]
    samples = args.samples.split(",")
    (args.out / "tables").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    extra = ["--max-train-samples", str(args.train_samples), *args.search_options.split()]
    jobs = []
    for device in devices:
        for n in samples:
            for seed in seeds:
                table = args.out / "tables" / f"{device}-n{n}-s{0 if n == 'all' else seed}.json"
                fit_table(device, n, 0 if n == "all" else seed, table)
                for budget in PROTOCOL[device]:
                    for strategy in args.strategies.split(","):
                        run = args.out / "runs" / f"{device}-{budget}ms-n{n}-{strategy}-s{seed}"
                        jobs.append({"device": device, "budget": budget, "samples": n,
                                     "seed": seed, "strategy": strategy, "table": table,
                                     "run": run, "extra": extra})
    refs = [{"device": None, "budget": None, "samples": None, "seed": seed,
             "strategy": strategy, "table": None, "extra": extra,
             "run": args.out / "runs" / f"nobudget-{strategy}-s{seed}"}
            for seed in seeds for strategy in args.strategies.split(",")]
    jobs += refs
    threads = max(1, (os.cpu_count() or 1) // max(args.jobs, 1))
    print(f"{len(jobs)} searches, {args.jobs} at a time, {threads} thread(s) each",
          file=sys.stderr)
    done = 0

    def one(job: dict) -> None:
        nonlocal done
        seconds = search(job, threads)
        done += 1
        print(f"[{done}/{len(jobs)}] {job['run'].name} ({seconds:.0f} s)", file=sys.stderr)

    with ThreadPoolExecutor(max_workers=max(args.jobs, 1)) as pool:
        list(pool.map(one, jobs))
    rows = [row(j) for j in jobs if j["budget"] is not None]
    with (args.out / "latency_target.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    found = [reference(j) for j in refs]
    with (args.out / "latency_target_nobudget.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(found[0]))
        writer.writeheader()
        writer.writerows(found)
    text = markdown(rows) + reference_markdown(found, rows)
    (args.out / "latency_target.md").write_text(text)
    print(text)

    from nasp.viz.latency_plot import plot_latency
    from nasp.viz.runs import load_run

    size = "100" if "100" in samples else samples[0]
    shown = [j for j in jobs if j["budget"] is not None and j["samples"] == size]
    plot_latency([load_run(j["run"]) for j in shown if not j.get("refused")], args.out)
    print(f"wall time {time.perf_counter() - t0:.0f} s; figures in {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
