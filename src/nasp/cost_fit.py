"""Fitting an additive cost model (``nasp.cost_model``) to measured networks, and judging it.

Least squares over the one-hot features of the (cell position, op) pairs each measured
network runs, plus a constant. With few measurements (ten cells against 24 NAS-Bench-201
entries) plain least squares has no unique answer, and a minimum-norm one invents
differences between positions. What the positions of one op share is most of its cost, so
each (cell type, edge, op) entry is pulled towards the mean of that op over the cell type's
edges with a ridge weight ρ: ``min ‖Xw + c - y‖² + ρ Σ (w[e,k] - mean_e w[·,k])²``. ρ is
chosen among a few values by the leave-one-out error of the measured networks (a closed form
for a linear smoother: residual / (1 - leverage)), so ten cells give nearly one cost per op
and thousands give each position its own; where the measurements are exactly additive, ρ = 0
wins and the fit recovers the table exactly. Entries may be negative: they are costs relative
to ``none``, and where ``none`` itself runs (NAS-Bench-201's PyTorch code multiplies by zero)
a skip connection is cheaper than it (R² on every cell of 1080ti_256: 0.9996 unconstrained,
0.975 with entries held at 0 or more). The dead-end rule (``free`` or ``cost``) is
chosen the same way when not given: both are fitted, and ``free`` wins only when its
leave-one-out error is at least 10% lower. With ten cells both rules fit about equally and
the difference is noise; the shipped table says which rule to prefer then: every op runs on 25
of its 27 devices (the GPUs, server CPUs and most phones measured a PyTorch network as
written; the ASIC and FPGA simulators count every op; R² of the additive fit on all cells is
1.000000 for both with ``cost`` and 0.9168 / 0.9166 with ``free``), and dead ends are free
only on pixel3 and raspi4 (runtimes that prune unused graph).

``evaluate`` scores predictions on networks the fit did not see: Kendall's τ (rank agreement,
what a search needs) and the mean absolute percentage error, beside the τ of multiply-adds,
the proxy a user would otherwise rank by.
"""

from __future__ import annotations

import csv
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from nasp.cost_model import DEAD_ENDS, CostModel, features
from nasp.errors import NaspError
from nasp.spaces.base import CellSpec

RIDGE_GRID = (0.0, 1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3, 1e4, 1e5)
# "free" (dead ends pruned) must beat "cost" by this much in leave-one-out RMSE to be chosen
FREE_MARGIN = 0.9
Selection = tuple[int, ...]


@dataclass
class Fit:
    """A fitted model and how it was chosen: ρ, leave-one-out RMSE and predictions, R²."""

    model: CostModel
    rho: float
    loo_rmse: float
    loo_pred: np.ndarray
    r2: float


def _deviation_matrix(cells: Mapping[str, CellSpec]) -> np.ndarray:
    """D with (D w)[e,k] = w[e,k] - mean over the cell type's edges of w[·,k]."""
    blocks = []
    for cell in cells.values():
        n = cell.num_edges * cell.num_ops
        avg = np.zeros((n, n))
        for e in range(cell.num_edges):
            for e2 in range(cell.num_edges):
                for k in range(cell.num_ops):
                    avg[e * cell.num_ops + k, e2 * cell.num_ops + k] = 1.0 / cell.num_edges
        blocks.append(np.eye(n) - avg)
    size = sum(b.shape[0] for b in blocks)
    d, at = np.zeros((size, size)), 0
    for b in blocks:
        d[at:at + len(b), at:at + len(b)] = b
        at += len(b)
    return d


def _solve(x: np.ndarray, y: np.ndarray, penalty: np.ndarray, rho: float
           ) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients (features then constant) and leave-one-out predictions."""
    xa = np.hstack([x, np.ones((len(x), 1))])
    reg = np.zeros((xa.shape[1], xa.shape[1]))
    reg[:-1, :-1] = rho * penalty
    inv = np.linalg.pinv(xa.T @ xa + reg, rcond=1e-10, hermitian=True)
    w = inv @ xa.T @ y
    lev = np.einsum("ij,jk,ik->i", xa, inv, xa)
    resid = y - xa @ w
    with np.errstate(divide="ignore", invalid="ignore"):
        loo = np.where(lev < 1 - 1e-8, y - resid / (1 - lev), np.nan)
    return w, loo


def fit_features(x: np.ndarray, y: np.ndarray, cells: Mapping[str, CellSpec],
                 rhos: Sequence[float] = RIDGE_GRID) -> tuple[np.ndarray, float, float,
                                                              np.ndarray]:
    """Least squares with the ρ of lowest leave-one-out error: (coefficients, ρ, LOO RMSE,
    LOO predictions). Columns no network runs (``none``) stay 0."""
    penalty = _deviation_matrix(cells)
    used = x.any(axis=0)
    # entries that never run (none, or never sampled without sharing) carry no information
    best = None
    for rho in rhos:
        w, loo = _solve(x, y, penalty, rho)
        err = math.inf if np.isnan(loo).any() else float(np.sqrt(np.mean((loo - y) ** 2)))
        if best is None or err < best[2] - 1e-12 * max(1.0, abs(err)):
            best = (w, rho, err, loo)
    w, rho, err, loo = best
    coef = w.copy()
    if rho == 0.0:
        coef[:-1][~used] = 0.0  # unidentified without sharing: say nothing rather than guess
    return coef, rho, err, loo


def fit(selections: Sequence[Mapping[str, Selection]], latencies: Sequence[float],
        space: str, cells: Mapping[str, CellSpec], dead_ends: str = "auto",
        info: Mapping[str, Any] | None = None) -> Fit:
    """The cost model of ``space`` from measured networks (module doc)."""
    y = np.asarray(latencies, dtype=np.float64)
    if len(y) < 2:
        raise NaspError(f"{len(y)} measured network(s) cannot fit a cost table",
                        "measure at least 2 (10 or more is better)")
    rules = DEAD_ENDS if dead_ends == "auto" else (dead_ends,)
    best: tuple | None = None
    for rule in rules:
        x = feature_matrix(selections, cells, rule)
        coef, rho, err, loo = fit_features(x, y, cells)
        pred = np.hstack([x, np.ones((len(x), 1))]) @ coef
        ss = float(((y - y.mean()) ** 2).sum())
        r2 = 1.0 - float(((y - pred) ** 2).sum()) / ss if ss > 0 else 1.0
        # "cost" first; "free" must be clearly better (module doc)
        if best is None or err < FREE_MARGIN * best[3] - 1e-9 * float(np.abs(y).mean()):
            best = (rule, coef, rho, err, loo, r2)
    rule, coef, rho, err, loo, r2 = best
    cost, at = {}, 0
    for name, cell in cells.items():
        n = cell.num_edges * cell.num_ops
        cost[name] = coef[at:at + n].reshape(cell.num_edges, cell.num_ops)
        at += n
    # how far above its prediction a network's latency can be: the margin a budget needs to
    # hold on the device (``--latency-margin auto``), from networks the fit did not see
    excess = np.clip(y / loo - 1.0, 0.0, None) if np.isfinite(loo).all() and (loo > 0).all() \
        else None
    fit_info = {**(info or {}), "samples": len(y), "dead_ends_rule": dead_ends,
                "ridge": rho, "loo_rmse_ms": err, "r2": r2,
                "loo_excess_q90": None if excess is None else float(np.quantile(excess, 0.9))}
    model = CostModel(space, cost, float(coef[-1]), rule, "ms", fit_info)
    return Fit(model, rho, err, loo, r2)


def feature_matrix(selections: Sequence[Mapping[str, Selection]],
                   cells: Mapping[str, CellSpec], dead_ends: str) -> np.ndarray:
    """Rows of ``features`` for many architectures."""
    return np.stack([features(s, cells, dead_ends) for s in selections])


def predict_many(model: CostModel, selections: Sequence[Mapping[str, Selection]],
                 cells: Mapping[str, CellSpec]) -> np.ndarray:
    """``model.predict_selection`` of many architectures at once."""
    return feature_matrix(selections, cells, model.dead_ends) @ model.vector() + model.constant


# --- judging predictions ----------------------------------------------------------------------

def kendall_tau(x: Sequence[float], y: Sequence[float]) -> float:
    """Kendall's τ-b (ties in either ranking handled), exact, in O(n log n): pairs discordant
    in (x, y) are the inversions of y once sorted by (x, y), counted with a Fenwick tree."""
    a, b = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    n = len(a)
    if n < 2:
        return math.nan
    order = np.lexsort((b, a))
    _, ranks = np.unique(b[order], return_inverse=True)
    tree = [0] * (int(ranks.max()) + 2)
    discordant = 0
    for seen, r in enumerate(ranks.tolist()):
        i, below = r + 1, 0  # how many earlier entries have rank <= r
        while i > 0:
            below += tree[i]
            i -= i & -i
        discordant += seen - below
        i = r + 1
        while i < len(tree):
            tree[i] += 1
            i += i & -i

    def tied(*v: np.ndarray) -> float:
        _, counts = np.unique(np.stack(v, axis=1), axis=0, return_counts=True)
        return float((counts * (counts - 1) / 2.0).sum())

    pairs = n * (n - 1) / 2.0
    tx, ty, txy = tied(a), tied(b), tied(a, b)
    concordant = pairs - tx - ty + txy - discordant
    denom = math.sqrt((pairs - tx) * (pairs - ty))
    return (concordant - discordant) / denom if denom > 0 else math.nan


def mape(pred: Sequence[float], true: Sequence[float]) -> float:
    """Mean absolute percentage error (%) of ``pred`` against ``true``."""
    p, t = np.asarray(pred, dtype=np.float64), np.asarray(true, dtype=np.float64)
    return float(np.mean(np.abs(p - t) / np.abs(t)) * 100.0)


def evaluate(pred: Sequence[float], true: Sequence[float],
             madds: Sequence[float] | None = None) -> dict[str, Any]:
    """τ and MAPE of predictions on unseen networks, and the τ of multiply-adds."""
    out: dict[str, Any] = {"cells": len(true), "kendall_tau": kendall_tau(pred, true),
                           "mape_pct": mape(pred, true)}
    if madds is not None:
        out["flops_kendall_tau"] = kendall_tau(madds, true)
    return out


# --- where measurements come from -------------------------------------------------------------

def nb201_selection(arch: str) -> dict[str, Selection]:
    from nasp.nb201.strings import OP_NAMES, parse_arch

    return {"cell": tuple(OP_NAMES.index(op) for op, _ in parse_arch(arch))}


def sample_table(device: str, samples: int | None, seed: int
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(indices fitted on, indices held out) of the shipped table: ``samples`` random cells
    (seeded; None: every cell, nothing held out)."""
    from nasp.nb201.latency import check_device, latency_table

    check_device(device)
    n = len(latency_table())
    if samples is None:
        return np.arange(n), np.arange(0)
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 2:
        raise NaspError(f"invalid --samples {samples!r}", "use --samples 2 or more")
    if samples > n:
        raise NaspError(f"--samples {samples} is more than the {n} cells the table measures",
                        f"use --samples {n} or fewer (or leave it out for all)")
    rng = np.random.default_rng([int(seed), 0x1A7E])
    chosen = np.sort(rng.choice(n, size=samples, replace=False))
    mask = np.ones(n, dtype=bool)
    mask[chosen] = False
    return chosen, np.flatnonzero(mask)


_NB201_MADDS: dict[str, Any] = {}


def nb201_madds(archs: Sequence[str]) -> np.ndarray:
    """Multiply-adds per image of the benchmark's network (C=16, 5 cells per stage, 3x32x32,
    10 classes) for each cell, as ``nasp info`` counts them (what runs: dead ends skipped).
    Additive per running op, so each op is counted once and cells are summed."""
    from nasp.spaces.nb201 import NB201_CELL
    from nasp.spaces.selection import live_edges

    if not _NB201_MADDS:
        from nasp.genotype import Genotype
        from nasp.models.cnn import build_eval_model, count_flops
        from nasp.nb201.strings import OP_NAMES, edge_inputs

        def madds(op: str) -> int:
            g = Genotype({"cell": tuple((op, j) for j in edge_inputs())}, {"cell": (3,)})
            return count_flops(build_eval_model(g, 3, 10, 32), (3, 32, 32))

        base = madds("none")
        _NB201_MADDS.update(base=base, per_op=[0.0] + [(madds(op) - base) / 6.0
                                                       for op in OP_NAMES[1:]])
    per_op, out = _NB201_MADDS["per_op"], []
    for arch in archs:
        sel = nb201_selection(arch)["cell"]
        out.append(_NB201_MADDS["base"] + sum(per_op[sel[e]] for e in
                                              live_edges(sel, NB201_CELL, "free")))
    return np.asarray(out, dtype=np.float64)


def read_measurements(path: str | os.PathLike) -> tuple[list[Any], list[float]]:
    """Rows ``genotype,latency_ms`` of a user's CSV: a NAS-Bench-201 cell string, a published
    genotype name or a genotype.json path, then the measured latency in ms. A first line
    whose latency is not a number is a header. A bad row is an error naming its line."""
    from nasp.genotype import get_genotype

    p = Path(path)
    if not p.is_file():
        raise NaspError(f"measurements file {p} does not exist", "check the --csv path")
    genotypes, latencies = [], []
    with p.open(newline="", encoding="utf-8") as f:
        for lineno, row in enumerate(csv.reader(f), start=1):
            if not row or all(not c.strip() for c in row) or row[0].lstrip().startswith("#"):
                continue
            hint = ("each row is: genotype (a cell string |op~0|+|...|, a genotype.json, a "
                    "published name), latency in ms")
            if len(row) != 2:
                raise NaspError(f"{p} line {lineno} has {len(row)} fields, expected 2", hint)
            try:
                ms = float(row[1])
            except ValueError:
                if lineno == 1 and not genotypes:
                    continue  # a header
                raise NaspError(f"{p} line {lineno}: latency {row[1]!r} is not a number",
                                hint) from None
            if not math.isfinite(ms) or ms <= 0:
                raise NaspError(f"{p} line {lineno}: latency {row[1]!r} must be a positive "
                                "number of ms", hint)
            try:
                genotypes.append(get_genotype(row[0].strip()))
            except NaspError as e:
                raise NaspError(f"{p} line {lineno}: {e.message}", e.hint) from None
            latencies.append(ms)
    if len(latencies) < 2:
        raise NaspError(f"{p} holds {len(latencies)} measurement(s)",
                        "measure at least 2 networks (10 or more is better)")
    return genotypes, latencies
