"""Fabricated run folders in the documented format, for the viz tests.

Plots, tables and reports read nothing but run folders, so they can be exercised without hours
of search. The numbers are made up but deterministic per seed and shaped like a real search:
weights drift from uniform towards one op per edge, accuracy rises, wall time grows.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

from nasp.genotype import format_genotype_json

CNN_OPS = ("max_pool_3x3", "skip_connect", "sep_conv_3x3", "dil_conv_3x3")
RNN_OPS = ("tanh", "relu", "sigmoid", "identity")
# the matrices each strategy's ``snapshot`` records in arch.jsonl (random and fixed keep only the
# architecture they run)
WEIGHT_NAMES = {
    "nasp": ("A", "A_bar"),
    "pa": ("A", "A_bar"),
    "pa-lazy": ("A", "A_bar"),
    "darts": ("alpha", "softmax"),
    "darts2": ("alpha", "softmax"),
    "asap": ("alpha", "weights"),
    "random": ("A_bar",),
    "fixed": ("A_bar",),
}


def cell_edges(inputs: int, nodes: int) -> list[list[int]]:
    """``[node, input]`` pairs in the order the search spaces enumerate them."""
    return [[i, j] for i in range(nodes) for j in range(inputs + i)]


def _weights(rng: random.Random, n_edges: int, n_ops: int, progress: float,
             target: list[int]) -> list[list[float]]:
    rows = []
    for e in range(n_edges):
        raw = [1.0 + 0.1 * rng.random() for _ in range(n_ops)]
        raw[target[e]] += 3.0 * progress
        total = sum(raw)
        rows.append([round(v / total, 6) for v in raw])
    return rows


def _one_hot(matrix: list[list[float]], edges: list[list[int]], keep: int) -> list[list[float]]:
    """Ā-style matrix: the winning op of the ``keep`` strongest edges per node, zero elsewhere."""
    out = [[0.0] * len(row) for row in matrix]
    for node in sorted({n for n, _ in edges}):
        idx = [e for e, (n, _) in enumerate(edges) if n == node]
        idx.sort(key=lambda e: -max(matrix[e]))
        for e in idx[:keep]:
            out[e][matrix[e].index(max(matrix[e]))] = 1.0
    return out


def _genotype(cells: dict[str, Any], task: str) -> dict[str, Any]:
    keep = 1 if task == "lm" else 2
    geno: dict[str, Any] = {}
    for name, cell in cells.items():
        matrix = next(iter(cell["weights"].values()))
        hot = _one_hot(matrix, cell["edges"], keep)
        pairs = [[cell["ops"][row.index(1.0)], cell["edges"][e][1]]
                 for e, row in enumerate(hot) if 1.0 in row]
        geno[name] = pairs
    if task == "lm":
        geno["concat"] = list(range(1, 9))
    else:
        geno["normal_concat"] = [2, 3, 4, 5]
        geno["reduce_concat"] = [2, 3, 4, 5]
    return geno


def write_search_run(
    path: str | os.PathLike[str],
    *,
    strategy: str = "nasp",
    seed: int = 0,
    epochs: int = 3,
    task: str = "cnn",
    lambda_params: float | None = None,
    ops: tuple[str, ...] | None = None,
    epoch_time: float = 10.0,
    result: dict[str, Any] | None = None,
) -> Path:
    """Write a finished search run folder; ``result`` entries override the made-up summary."""
    rng = random.Random(f"{strategy}-{seed}-{task}")
    folder = Path(path)
    folder.mkdir(parents=True, exist_ok=True)
    ops = ops or (RNN_OPS if task == "lm" else CNN_OPS)
    shapes = {"recurrent": (1, 8)} if task == "lm" else {"normal": (2, 4), "reduce": (2, 4)}
    names = WEIGHT_NAMES.get(strategy, ("alpha", "softmax"))
    targets = {c: [rng.randrange(len(ops)) for _ in cell_edges(*s)] for c, s in shapes.items()}

    config = {
        "command": "search", "task": task, "strategy": strategy, "seed": seed,
        "space": "rnn" if task == "lm" else "synthetic", "data": "synthetic",
        "lambda_params": lambda_params, "preset": None, "epochs": epochs,
    }
    skill = rng.uniform(-0.05, 0.05)  # runs differ a little, as seeds do
    arch_lines, metric_lines, cells = [], [], {}
    wall = 0.0
    for epoch in range(-1, epochs):
        progress = (epoch + 1) / max(epochs, 1)
        cells = {}
        for cell, (inputs, nodes) in shapes.items():
            edges = cell_edges(inputs, nodes)
            first = _weights(rng, len(edges), len(ops), progress, targets[cell])
            discrete = _one_hot(first, edges, 1 if task == "lm" else 2)
            if len(names) == 1:  # random, fixed: only the architecture that runs
                weights = {names[0]: discrete}
            else:  # continuous parameters, then what runs (discrete, or a softmax of them)
                weights = {names[0]: first,
                           names[1]: discrete if names[1] in ("A_bar", "weights") else first}
            cells[cell] = {"ops": list(ops), "edges": edges, "weights": weights}
        arch_lines.append({"epoch": epoch, "strategy": strategy, "cells": cells})
        if epoch < 0:
            continue
        times = {"time_arch": round(0.3 * epoch_time, 3),
                 "time_forward": round(0.2 * epoch_time, 3),
                 "time_backward": round(0.4 * epoch_time, 3)}
        wall += epoch_time
        record: dict[str, Any] = {"epoch": epoch, "train_loss": 2.0 - progress, "lr": 0.025,
                                  **times, "epoch_time": epoch_time, "wall_time": wall,
                                  "peak_mem_mb": 100.0 + 10 * seed}
        if task == "lm":
            record.update(train_ppl=900 - 300 * progress,
                          valid_ppl=round(1000 * (1 - skill) - 300 * progress, 3),
                          valid_loss=6.5 - progress)
        else:
            record.update(train_acc=0.3 + 0.4 * progress,
                          valid_acc=round(0.25 + skill + 0.4 * progress, 6),
                          valid_loss=1.8 - progress)
        metric_lines.append(record)

    genotype = _genotype(cells, task)
    summary: dict[str, Any] = {
        "genotype": genotype, "search_time_s": wall, "epochs": epochs,
        "eval_params_m": round(2.0 + rng.random(), 3),
        "time_arch": sum(m["time_arch"] for m in metric_lines),
        "time_forward": sum(m["time_forward"] for m in metric_lines),
        "time_backward": sum(m["time_backward"] for m in metric_lines),
        "peak_mem_mb": max(m["peak_mem_mb"] for m in metric_lines) if metric_lines else None,
    }
    metric = "valid_ppl" if task == "lm" else "valid_acc"
    last = metric_lines[-1][metric] if metric_lines else None
    summary.update({f"search_{metric}": last, "search_network": f"the {strategy} search network",
                    "search_epoch": epochs - 1})
    if last is not None:  # as `nasp compare` adds it: the retrained architecture's test score
        summary[f"final_test_{metric.split('_')[1]}"] = round(last * 0.98, 6)
    summary.update(result or {})

    (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (folder / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metric_lines))
    (folder / "arch.jsonl").write_text("".join(json.dumps(a) + "\n" for a in arch_lines))
    (folder / "genotype.json").write_text(format_genotype_json(genotype))
    (folder / "result.json").write_text(json.dumps(summary, indent=2) + "\n")
    return folder
