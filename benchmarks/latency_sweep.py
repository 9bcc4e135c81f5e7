"""Latency-aware search: sweep λ of the latency regularizer, then measure what it found.

One command for the paper's Figure 2 with latency on its axis. Steps (each reused when its
output exists, so an interrupted sweep continues):

1. ``nasp profile``: the latency of every candidate op at every position of the evaluation
   network the found cells will be trained in (the quick training preset's network on the
   bundled data: 8 cells, C=16, 1x28x28), on this CPU, batch 1, one thread;
2. per λ, ``nasp compare --strategies nasp`` over the seeds with ``--cost latency
   --cost-table costs.json --lambda-cost λ``: each found cell is retrained from scratch and
   scored on the held-out test set (the compare scoring);
3. every found cell's evaluation network timed on this CPU (batch 1, one thread, median of
   repeats), all networks in the same rounds so load affects them alike.

Writes ``OUT/sweep.csv`` (λ, seed, measured and predicted latency, test accuracy, params) and
``OUT/latency.png|svg``: test accuracy against measured latency, one point per λ and seed, and
measured latency against λ. Usage:

    python benchmarks/latency_sweep.py --out runs/latency --lambdas 0,0.3,1,3 --seeds 0,1
    python benchmarks/latency_sweep.py --out runs/latency --epochs 4      # shorter searches
"""

from __future__ import annotations

import argparse
import csv
import json
import subprocess
import sys
from pathlib import Path


def nasp(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "nasp", *args], check=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--lambdas", default="0,0.3,1,3")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--epochs", type=int, default=None, help="search epochs (default: preset's)")
    p.add_argument("--jobs", type=int, default=1)
    p.add_argument("--repeats", type=int, default=30)
    args = p.parse_args()
    lambdas = [float(x) for x in args.lambdas.split(",")]
    args.out.mkdir(parents=True, exist_ok=True)
    table = args.out / "costs.json"
    if not table.exists():
        nasp("profile", "--space", "nasp-7", "--data", "fashion-mnist-sample", "--preset",
             "quick", "--batch-size", "1", "--threads", "1", "--clock", "cpu",
             "-o", str(table))
    budget = ["--epochs", str(args.epochs)] if args.epochs else []
    for lam in lambdas:
        nasp("compare", "--strategies", "nasp", "--seeds", args.seeds, "--preset", "quick",
             "--cost", "latency", "--cost-table", str(table), "--lambda-cost", str(lam),
             "--out", str(args.out / f"lambda-{lam:g}"), "--jobs", str(args.jobs), "--quiet",
             *budget)

    import torch

    torch.set_num_threads(1)
    from nasp.configs.train_cnn import PRESETS
    from nasp.costs import predict
    from nasp.genotype import Genotype
    from nasp.latency import modules_latency
    from nasp.models import build_eval_model, count_params

    quick = PRESETS["quick"]
    rows, nets = [], []
    for lam in lambdas:
        for seed in args.seeds.split(","):
            run = args.out / f"lambda-{lam:g}" / f"nasp-s{seed}"
            result = json.loads((run / "result.json").read_text())
            genotype = Genotype.from_dict(result["genotype"])
            net = build_eval_model(genotype, 1, 10, 28, channels=quick["channels"],
                                   layers=quick["layers"], auxiliary=False)
            nets.append((net, (torch.randn(1, 1, 28, 28),)))
            rows.append({"lambda": lam, "seed": int(seed),
                         "test_acc": result.get("final_test_acc"),
                         "params_m": count_params(net) / 1e6,
                         "predicted_ms": predict(str(table), genotype, "latency"),
                         "genotype": json.dumps(result["genotype"])})
    timings = modules_latency(nets, torch.device("cpu"), repeats=args.repeats, clock="cpu")
    for row, t in zip(rows, timings, strict=True):
        row["measured_ms"] = t.ms
    with (args.out / "sweep.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    figure(rows, args.out)
    for lam in lambdas:
        mine = [r for r in rows if r["lambda"] == lam]
        ms = sum(r["measured_ms"] for r in mine) / len(mine)
        acc = [r["test_acc"] for r in mine if r["test_acc"] is not None]
        print(f"λ={lam:g}: measured latency {ms:.2f} ms (mean of {len(mine)}), test accuracy "
              + (f"{100 * sum(acc) / len(acc):.2f}%" if acc else "n/a")
              + f", params {sum(r['params_m'] for r in mine) / len(mine):.3f} M")
    print(f"-> {args.out / 'sweep.csv'}, {args.out / 'latency.png'}")


def figure(rows: list[dict], out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(9.5, 3.8), layout="constrained")
    ax_acc, ax_lat = fig.subplots(1, 2)
    lambdas = sorted({r["lambda"] for r in rows})
    for i, lam in enumerate(lambdas):
        mine = [r for r in rows if r["lambda"] == lam and r["test_acc"] is not None]
        ax_acc.scatter([r["measured_ms"] for r in mine], [100 * r["test_acc"] for r in mine],
                       color=f"C{i}", label=f"λ = {lam:g}")
    ax_acc.set_xlabel("measured CPU latency, batch 1 (ms)")
    ax_acc.set_ylabel("test accuracy, retrained (%)")
    ax_acc.set_title("accuracy vs. latency of the found cells")
    ax_acc.legend(frameon=False)
    means = [sum(r["measured_ms"] for r in rows if r["lambda"] == lam)
             / sum(1 for r in rows if r["lambda"] == lam) for lam in lambdas]
    ax_lat.scatter([r["lambda"] for r in rows], [r["measured_ms"] for r in rows], alpha=0.4,
                   color="C0", label="runs")
    ax_lat.plot(lambdas, means, marker="o", color="C0", label="mean over seeds")
    ax_lat.set_xscale("symlog", linthresh=min([x for x in lambdas if x > 0] or [1.0]))
    ax_lat.set_xlabel("λ (latency regularizer)")
    ax_lat.set_ylabel("measured CPU latency (ms)")
    ax_lat.set_title("latency vs. λ")
    ax_lat.legend(frameon=False)
    for ax in (ax_acc, ax_lat):
        ax.grid(alpha=0.3)
    for fmt in ("png", "svg"):
        fig.savefig(out / f"latency.{fmt}", dpi=150)


if __name__ == "__main__":
    main()
