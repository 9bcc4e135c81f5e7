"""An additive cost model of whole networks: a constant plus one cost per (cell position, op).

A discrete architecture of any space is, for its cost, the set of (cell type, edge, op) it
*runs*: a one-hot vector over the space's positions x ops. A network's latency is modelled as
``constant + Σ cost[cell type][edge, op]`` over that set, the constant holding what no choice
changes (stem, reductions, head, node sums). Nothing here knows a particular space: the cells'
shapes come from their ``CellSpec``, so a table can be fitted (``nasp.cost_fit``) or profiled
(``nasp profile``) for any space whose architectures are (cell position, op) choices.

Dead ends. Where a cell keeps every edge (NAS-Bench-201), an op whose output cannot reach the
cell output (its node feeds only ``none`` edges, and is not the output) changes nothing the
network computes. A runtime that prunes unused graph (TFLite on a phone, a compiled graph,
nasp's own evaluation network ``nasp.models.nb201``) never runs it: ``dead_ends="free"``.
Runtimes that execute every module as written, and the simulators of the benchmark's ASIC and
FPGA, do run it: ``dead_ends="cost"``. The model records which; fitting, prediction and the
budget of a search all use ``live_edges``, so they agree. ``none`` never costs anything.

The JSON file (``format`` "nasp-cost-model", ``version`` 1)::

    {"format": "nasp-cost-model", "version": 1, "space": "nb201", "unit": "ms",
     "dead_ends": "cost", "constant": 3.21,
     "cells": {"cell": {"ops": ["none", ...], "cost": [[0.0, 0.41, ...], ...]}},
     "fit": {...how it was made: source, device, samples, seed, errors...}}
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from nasp.errors import NaspError
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.spaces.selection import (  # noqa: F401 - names this module has always offered
    DEAD_ENDS,
    Selection,
    connected,
    genotype_to_selection,
    live_edges,
    useful_edges,
)

MODEL_FORMAT, MODEL_VERSION = "nasp-cost-model", 1


def features(selections: Mapping[str, Selection], cells: Mapping[str, CellSpec],
             dead_ends: str) -> np.ndarray:
    """The one-hot vector of the (cell type, edge, op) an architecture runs, cell types in
    ``cells`` order, each (edges, ops) row-major: what the model's costs multiply."""
    parts = []
    for name, cell in cells.items():
        x = np.zeros((cell.num_edges, cell.num_ops))
        sel = selections[name]
        for e in live_edges(sel, cell, dead_ends):
            x[e, sel[e]] = 1.0
        parts.append(x.ravel())
    return np.concatenate(parts)


@dataclass
class CostModel:
    """``constant + Σ cost[cell][edge, op]`` over the ops an architecture runs (module doc)."""

    space: str
    cost: dict[str, np.ndarray]          # cell type -> (edges, ops), in ``unit``
    constant: float
    dead_ends: str = "cost"
    unit: str = "ms"
    fit: dict[str, Any] = field(default_factory=dict)
    specs: dict[str, CellSpec] | None = None  # a space in no registry (a user model's)

    def cells(self) -> dict[str, CellSpec]:
        if self.specs is not None:
            return dict(self.specs)
        from nasp.spaces import get_space

        return dict(get_space(self.space).cells)

    def check_space(self, space: SearchSpace) -> None:
        if space.name != self.space:
            raise NaspError(f"the cost table is of space {self.space!r}, the search's is "
                            f"{space.name!r}", f"fit or profile one for --space {space.name}")

    def vector(self) -> np.ndarray:
        return np.concatenate([self.cost[name].ravel() for name in self.cost])

    def predict_selection(self, selections: Mapping[str, Selection],
                          cells: Mapping[str, CellSpec] | None = None) -> float:
        """The predicted cost of a discrete architecture given as per-cell selections."""
        cells = cells or self.cells()
        total = self.constant
        for name, cell in cells.items():
            sel, cost = selections[name], self.cost[name]
            for e in live_edges(sel, cell, self.dead_ends):
                total += float(cost[e, sel[e]])
        return total

    def predict(self, genotype: Any) -> float:
        """The predicted cost of a genotype (or an nb201 cell string) of the model's space."""
        from nasp.genotype import Genotype, get_genotype

        if not isinstance(genotype, Genotype):
            genotype = get_genotype(genotype)
        return self.predict_selection(genotype_to_selection(genotype, self.cells()))

    def cheapest(self) -> tuple[float, dict[str, Selection] | None]:
        """The lowest cost any architecture of the space can have (one whose output depends on
        its input), and one such architecture when the space is small enough to enumerate
        (NAS-Bench-201: 15,625 cells); for larger spaces a lower bound (each node's cheapest
        edges; exact without dead ends)."""
        cells = self.cells()
        if enumerable(cells):
            sels, costs = enumerate_costs(self, cells)
            i = int(np.argmin(costs))
            return float(costs[i]), {name: tuple(int(k) for k in s[i]) for name, s in
                                     sels.items()}
        total = self.constant
        for name, cell in cells.items():
            best = np.where(np.isin(np.arange(cell.num_ops), cell.final_ops),
                            self.cost[name], np.inf).min(axis=1)
            best = np.minimum(best, 0.0) if "none" in cell.ops else best
            for i, node_edges in enumerate(cell.node_edges):
                total += float(np.sort(best[list(node_edges)])[: cell.kept(i)].sum())
        return total, None

    def to_dict(self) -> dict[str, Any]:
        cells = self.cells()
        return {"format": MODEL_FORMAT, "version": MODEL_VERSION, "space": self.space,
                "unit": self.unit, "dead_ends": self.dead_ends, "constant": self.constant,
                "cells": {name: {"ops": list(cells[name].ops),
                                 "cost": [[round(float(v), 6) for v in row] for row in m]}
                          for name, m in self.cost.items()},
                "fit": self.fit}

    def save(self, path: str | os.PathLike) -> None:
        from nasp.run_folder import write_json

        Path(path).parent.mkdir(parents=True, exist_ok=True)
        write_json(Path(path), self.to_dict())


ENUMERATE_LIMIT = 200_000


def enumerable(cells: Mapping[str, CellSpec]) -> bool:
    """Whether every architecture of these cells can be listed (one cell type, every edge kept,
    ops^edges small): then budgets are checked and projected exactly."""
    if len(cells) != 1:
        return False
    cell = next(iter(cells.values()))
    return cell.keep is None and len(cell.final_ops) ** cell.num_edges <= ENUMERATE_LIMIT


def all_selections(cell: CellSpec) -> np.ndarray:
    """Every selection of a cell that keeps all edges, (n, edges) op columns, lexicographic."""
    ops = np.asarray(cell.final_ops)
    grids = np.meshgrid(*[ops] * cell.num_edges, indexing="ij")
    return np.stack([g.ravel() for g in grids], axis=1)


_ENUM_CACHE: dict[tuple, tuple[dict[str, np.ndarray], np.ndarray]] = {}


def enumerate_costs(model: CostModel, cells: Mapping[str, CellSpec]
                    ) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Every architecture of an enumerable space and its predicted cost (cached per model);
    architectures whose output ignores their input (``connected``) cost +inf."""
    key = (model.space, model.dead_ends, model.constant, model.vector().tobytes())
    if key not in _ENUM_CACHE:
        (name, cell), = cells.items()
        sels = all_selections(cell)
        cost = model.cost[name]
        live = np.zeros(sels.shape, dtype=bool)
        valid = np.zeros(len(sels), dtype=bool)
        for i, s in enumerate(sels):
            live[i, live_edges(tuple(s), cell, model.dead_ends)] = True
            valid[i] = connected(tuple(s), cell)
        per_edge = cost[np.arange(cell.num_edges)[None, :], sels]
        costs = np.where(valid, model.constant + (per_edge * live).sum(axis=1), np.inf)
        _ENUM_CACHE.clear()  # one model per process in practice
        _ENUM_CACHE[key] = ({name: sels}, costs)
    return _ENUM_CACHE[key]


def from_dict(data: Mapping[str, Any], source: str = "the cost table") -> CostModel:
    """A fitted model from its JSON (``load_cost_model`` also reads ``nasp profile`` tables)."""
    from nasp.spaces import SPACES

    if data.get("version") != MODEL_VERSION:
        raise NaspError(f"{source}: cost model version {data.get('version')} is not supported "
                        f"(this nasp reads version {MODEL_VERSION})", "fit it again")
    space = data.get("space")
    if space not in SPACES:
        raise NaspError(f"{source}: unknown space {space!r}", "fit it again with nasp costs fit")
    cells = SPACES.get(space).cells
    cost = {}
    try:
        for name, cell in cells.items():
            m = np.asarray(data["cells"][name]["cost"], dtype=np.float64)
            if m.shape != (cell.num_edges, cell.num_ops) or \
                    list(data["cells"][name]["ops"]) != list(cell.ops):
                raise ValueError(f"cell {name!r} has the wrong shape or ops")
            cost[name] = m
        constant = float(data["constant"])
        dead_ends = str(data.get("dead_ends", "cost"))
        if dead_ends not in DEAD_ENDS:
            raise ValueError(f"dead_ends {dead_ends!r}")
    except (KeyError, TypeError, ValueError) as e:
        raise NaspError(f"{source} is not a valid nasp cost model ({e})",
                        "make one with nasp costs fit") from None
    return CostModel(space, cost, constant, dead_ends, str(data.get("unit", "ms")),
                     dict(data.get("fit") or {}))


def load_cost_model(table: str | os.PathLike | Mapping[str, Any],
                    space: SearchSpace | None = None) -> CostModel:
    """The latency model of a cost file: a fitted model (``nasp costs fit``) or a profiled
    table (``nasp profile``: skeleton plus each op at its positions), checked against
    ``space`` when given."""
    from nasp.costs import TABLE_FORMAT, load_table

    source = "the cost table" if isinstance(table, Mapping) else str(table)
    if not isinstance(table, Mapping):
        from nasp.run_folder import read_json

        if not Path(table).is_file():
            raise NaspError(f"cost table {table} does not exist",
                            "make one with nasp profile or nasp costs fit")
        table = read_json(Path(table))
    if not isinstance(table, Mapping):
        raise NaspError(f"{source} is not a nasp cost table", "make one with nasp profile or "
                        "nasp costs fit")
    if table.get("format") == MODEL_FORMAT:
        model = from_dict(table, source)
    elif table.get("format") == TABLE_FORMAT and "choices" in table:
        model = own_profiled_model(load_table(dict(table)), space)
    elif table.get("format") == TABLE_FORMAT:
        model = profiled_model(load_table(dict(table)))
    else:
        raise NaspError(f"{source} is not a nasp cost table",
                        "make one with nasp profile or nasp costs fit")
    if space is not None:
        model.check_space(space)
    return model


def profiled_model(table: dict[str, Any]) -> CostModel:
    """A ``nasp profile`` table as an additive latency model: each op's cost summed over the
    cells where it sits, the skeleton as the constant. nasp's evaluation networks skip dead
    ends (nb201) and DARTS-style cells have none, so the model's rule is ``free``."""
    from nasp.costs import cost_matrices
    from nasp.spaces import SPACES

    name = table.get("space")
    if name not in SPACES:
        raise NaspError(f"the cost table's space {name!r} is unknown", "profile it again")
    space = SPACES.get(name)
    raw = cost_matrices(table, space, "latency")
    constant = float(sum(float(p["latency_ms"]) for p in table["fixed"]))
    return CostModel(name, {k: v.numpy() for k, v in raw.items()}, constant, "free", "ms",
                     {"source": "nasp profile", "device": table.get("device"),
                      "batch_size": table.get("batch_size")})


def own_profiled_model(table: dict[str, Any], space: SearchSpace | None) -> CostModel:
    """A ``nasp profile --space FILE.py:FUNCTION`` table as an additive latency model of that
    model's choices: each candidate's time where it sits, the skeleton as the constant."""
    from nasp.costs import model_cost_matrices

    if space is None or space.family != "model":
        raise NaspError(f"the cost table profiles your own model {table.get('space')!r}, "
                        "not a built-in space", "profile the space you search: nasp profile "
                        "--space NAME")
    raw = model_cost_matrices(table, space, "latency")
    constant = float(sum(float(p["latency_ms"]) for p in table["fixed"]))
    return CostModel(space.name, {k: v.numpy() for k, v in raw.items()}, constant, "free", "ms",
                     {"source": "nasp profile", "device": table.get("device"),
                      "batch_size": table.get("batch_size")}, specs=dict(space.cells))


def fit_note(model: CostModel) -> str:
    """One line on where a model comes from, for search summaries and ``nasp info``."""
    f = model.fit
    if f.get("source") == "nasp profile":
        dev = f.get("device") or {}
        return f"profiled on {dev.get('type', '?')} ({dev.get('name', '')})".replace(" ()", "")
    parts = [str(f.get("source", "fitted"))]
    if f.get("samples") is not None:
        parts.append(f"{f['samples']} measured cells")
    return ", ".join(parts)


def selections_of(genotypes: Sequence[Any], cells: Mapping[str, CellSpec]
                  ) -> list[dict[str, Selection]]:

    return [genotype_to_selection(g, cells) for g in genotypes]
