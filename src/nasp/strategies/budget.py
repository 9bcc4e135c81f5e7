"""A latency budget as a constraint of the search, inside the strategy layer.

``--latency-target T`` with a cost model (``nasp.cost_model``: fitted by ``nasp costs fit`` or
profiled by ``nasp profile``) turns the cost regularizer into a constraint, two ways at once:

* **The held architecture is projected into the budget.** NASP's step already ends in a
  projection, Ā = prox_C(A), the nearest discrete architecture to A. With a budget the set
  is C_T = {discrete architectures whose predicted latency is at most T}, and the nearest
  point of C_T to A in Frobenius norm is the feasible architecture that maximises Σ A[e, op(e)]
  (every one-hot Ā has the same norm). So prox_{C_T} is what NASP's own step becomes under a
  budget: every forward pass, weight step and exported genotype is within budget by
  construction, and the validation gradient is taken at a feasible Ā. The same projection
  derives DARTS's and ASAP's genotype from their weights (softmax(α), ASAP's survivors), so
  every strategy's final architecture meets T by prediction. It is exact where the space can
  be enumerated (NAS-Bench-201: 15,625 cells, all predicted once) and greedy otherwise
  (change, one edge at a time, the op that loses least weight per ms saved). Cells whose
  output does not depend on their input (``nasp.cost_model.connected``) are never chosen, and
  an op off every input-to-output path (``useful_edges``: fed only zeros, or a dead end)
  weighs what ``none`` weighs: it computes nothing, so it earns the cell nothing, while it
  may still cost time.
* **DARTS and ASAP adapt λ themselves (dual ascent).** They train a mixture, not a discrete
  architecture, so a projection of their derived genotype alone would leave the mixture
  ignorant of the budget: the weights would be trained for ops that the final cell cannot
  keep. So the regularizer's weight λ is the multiplier of the constraint "latency of the
  derived architecture ≤ T", updated after every architecture step by projected dual ascent,
  λ ← max(0, λ + η (L/T − 1)), with L the predicted latency of the genotype their weights
  derive without the budget. While it is over budget λ grows and the cost penalty pulls the
  mixture towards cheap ops; once it fits, λ shrinks back, so accuracy is not traded for speed
  beyond the budget. λ is part of the checkpoint.
* **NASP, PA and PA-lazy keep λ where it starts (0 by default).** Their forward passes run the
  projected Ā, so the weights are only ever trained on architectures within budget and the
  validation gradient (taken at Ā, every op probed) keeps ranking ops by what they are worth
  there; a growing λ would only push A further from accuracy, towards ops cheaper than the
  budget needs (a dual-ascent λ measured on prox_C(A) overshoots: λ keeps growing while
  Adam's momentum carries A past the budget, and it decays slowly). A fixed ``--lambda-cost``
  with a budget is charged at the unprojected Ā (2λ c Ā: on the ops the budget excludes).

``margin``: the search aims at T / (1 + margin), so that the measured latency meets T when the
model under-predicts; ``auto`` uses the fitted model's own 90th percentile of leave-one-out
under-prediction (0 for profiled tables). The user never chooses λ.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from nasp.cost_model import (
    CostModel,
    all_selections,
    connected,
    enumerable,
    enumerate_costs,
    useful_edges,
)
from nasp.spaces.base import CellSpec

Selection = tuple[int, ...]
Priority = tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True)
class LatencyBudget:
    """A target (ms), the model that predicts latency, the margin, and the dual step η."""

    model: CostModel
    target_ms: float
    margin: float = 0.0
    step: float = 0.02

    @property
    def aim_ms(self) -> float:
        """What the projection holds predicted latency to: target / (1 + margin)."""
        return self.target_ms / (1.0 + self.margin)

    def predict(self, selections: Mapping[str, Selection],
                cells: Mapping[str, CellSpec]) -> float:
        return self.model.predict_selection(selections, cells)


def project(budget: LatencyBudget, values: Mapping[str, np.ndarray],
            selections: Mapping[str, Selection], cells: Mapping[str, CellSpec],
            priority: Mapping[str, Priority] | None = None) -> dict[str, Selection]:
    """The architecture within budget nearest to ``values`` (module doc); ``selections`` (the
    unconstrained one) when it already fits."""
    selections = dict(selections)
    if budget.predict(selections, cells) <= budget.aim_ms and \
            all(connected(selections[name], cell) for name, cell in cells.items()):
        return selections
    if enumerable(cells):
        return _project_exact(budget, values, cells, priority)
    return _project_greedy(budget, values, selections, cells)


def _project_exact(budget: LatencyBudget, values: Mapping[str, np.ndarray],
                   cells: Mapping[str, CellSpec],
                   priority: Mapping[str, Priority] | None) -> dict[str, Selection]:
    sels, costs = enumerate_costs(budget.model, cells)
    (name, cell), = cells.items()
    s = sels[name]
    edges = np.arange(cell.num_edges)[None, :]
    v = np.asarray(values[name], dtype=np.float64)
    # an op off every input-to-output path computes nothing: it weighs what none weighs
    none = cell.ops.index("none") if "none" in cell.ops else None
    per_edge = v[edges, s]
    if none is not None:
        per_edge = np.where(_useful_mask(cell), per_edge, v[:, none][None, :])
    score = per_edge.sum(axis=1)
    # ties (A on the box's edge) go to the seeded op priority, never to a position
    rank = priority[name][0][edges, s].sum(axis=1) if priority else np.zeros(len(s))
    feasible = costs <= budget.aim_ms
    if not feasible.any():  # cannot happen once the budget is checked; keep the cheapest
        return {name: tuple(int(k) for k in s[int(np.argmin(costs))])}
    idx = np.flatnonzero(feasible)
    best = idx[np.lexsort((rank[idx], score[idx]))[-1]]
    return {name: tuple(int(k) for k in s[best])}


_USEFUL: dict[CellSpec, np.ndarray] = {}


def _useful_mask(cell: CellSpec) -> np.ndarray:
    """``useful_edges`` of every selection of ``all_selections(cell)``, as a boolean array."""
    if cell not in _USEFUL:
        sels = all_selections(cell)
        mask = np.zeros(sels.shape, dtype=bool)
        for i, sel in enumerate(sels):
            mask[i, useful_edges(tuple(int(k) for k in sel), cell)] = True
        _USEFUL[cell] = mask
    return _USEFUL[cell]


def _project_greedy(budget: LatencyBudget, values: Mapping[str, np.ndarray],
                    selections: dict[str, Selection],
                    cells: Mapping[str, CellSpec]) -> dict[str, Selection]:
    sel = {k: list(v) for k, v in selections.items()}
    current = budget.predict({k: tuple(v) for k, v in sel.items()}, cells)
    while current > budget.aim_ms:
        best = None  # (weight lost per ms saved, cell, edge, op, new latency)
        for name, cell in cells.items():
            v = np.asarray(values[name], dtype=np.float64)
            for e, k in enumerate(sel[name]):
                if k < 0:
                    continue
                for k2 in cell.final_ops:
                    if k2 == k:
                        continue
                    trial = {n: tuple(s) for n, s in sel.items()}
                    trial[name] = tuple(k2 if i == e else x for i, x in enumerate(sel[name]))
                    ms = budget.predict(trial, cells)
                    if ms >= current:
                        continue
                    ratio = max(float(v[e, k] - v[e, k2]), 0.0) / (current - ms)
                    if best is None or ratio < best[0]:
                        best = (ratio, name, e, k2, ms)
        if best is None:
            break  # nothing left to save: the caller reports by how much it is over
        _, name, e, k2, current = best
        sel[name][e] = k2
    return {k: tuple(v) for k, v in sel.items()}


class BudgetState:
    """λ and the last prediction of one search: what the dual ascent carries between steps."""

    def __init__(self, budget: LatencyBudget, lam: float = 0.0) -> None:
        self.budget = budget
        self.lam = float(lam)
        self.free_ms: float | None = None

    def observe(self, selections: Mapping[str, Selection], cells: Mapping[str, CellSpec],
                dual: bool = True) -> None:
        """Record the unprojected architecture's predicted latency and, with ``dual``, take
        one dual-ascent step of λ on it."""
        b = self.budget
        self.free_ms = b.predict(selections, cells)
        if dual:
            self.lam = max(0.0, self.lam + b.step * (self.free_ms / b.aim_ms - 1.0))

    def state_dict(self) -> dict[str, Any]:
        return {"lam": self.lam, "free_ms": self.free_ms}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.lam = float(state["lam"])
        self.free_ms = state.get("free_ms")


def report(budget: LatencyBudget, predicted_ms: float) -> dict[str, Any]:
    """result.json's account of a budget: met or by how much not (predicted latency)."""
    out = {"latency_target_ms": budget.target_ms, "latency_margin": budget.margin,
           "latency_aim_ms": budget.aim_ms, "latency_pred_ms": predicted_ms,
           "latency_met": bool(predicted_ms <= budget.target_ms + 1e-9)}
    if not out["latency_met"]:
        out["latency_over_ms"] = predicted_ms - budget.target_ms
    return out
