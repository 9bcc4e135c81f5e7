"""A run's strategy from its configuration: the one place a ``SearchConfig`` becomes a
``Strategy``.

The configuration is described here by what building reads of it (``StrategyOptions``), not by
importing ``SearchConfig``: the configurations sit a layer above the strategies (they check a
strategy's name), so the strategies must not reach back up to them.

The search loop and ``nasp compare`` receive a strategy built here and never read strategy
options themselves. Building is cheap (no network, no data), so it happens before any data is
read: a bad ``--strategy-options`` or cost table fails at once, not after loading a dataset.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import torch

from nasp.spaces import get_space
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import Strategy, StrategySetup, create_strategy
from nasp.strategies.budget import LatencyBudget


class StrategyOptions(Protocol):
    """The options of a run that building its strategy reads (``SearchConfig`` has them)."""

    strategy: str
    strategy_options: dict[str, Any]
    space: str
    seed: int
    epochs: int
    arch_lr: float
    arch_betas: tuple[float, float]
    arch_weight_decay: float
    cost: str
    cost_table: str | None
    lambda_cost: float
    latency_target: float | None
    latency_margin: float | None
    latency_step: float


def regularizer_costs(cfg: StrategyOptions, space: SearchSpace | None = None,
                      raw: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The normalised (edges, ops) costs per cell type of the run's regularizer: without a
    cost table, ``params`` are the release's counts (width 12, the edge's stride; so
    ``--lambda-params`` is exactly ``--cost params --lambda-cost``); with one, each op's cost
    summed over the evaluation-network positions of its cell type. ``raw``: costs measured
    elsewhere (a user model's candidates, measured by its task). A latency budget charges
    its cost model's latencies (negative fitted entries count as 0)."""
    from nasp.strategies.regularizer import normalise, normalise_jointly, param_costs

    space = space or get_space(cfg.space)
    if cfg.latency_target is not None:
        model = cost_model(cfg, space)
        return {name: normalise(torch.from_numpy(m).clamp_min(0.0))
                for name, m in model.cost.items()}
    if cfg.lambda_cost == 0:
        return {}
    if raw is None and cfg.cost_table is None:
        raw = {name: param_costs(cell, space.op_registry) for name, cell in space.cells.items()}
    elif raw is None and cfg.cost == "latency":
        raw = {k: torch.from_numpy(v) for k, v in cost_model(cfg, space).cost.items()}
    elif raw is None:
        from nasp.costs import cost_matrices, load_table

        raw = cost_matrices(load_table(cfg.cost_table), space, cfg.cost)
    if space.family == "model":  # the model's choices compete for one budget
        return normalise_jointly(raw)
    return {name: normalise(r) for name, r in raw.items()}


def cost_model(cfg: StrategyOptions, space: SearchSpace | None = None):  # noqa: ANN201
    """The run's latency model (a ``nasp.cost_model.CostModel``): its --cost-table, profiled
    or fitted, of the run's space."""
    from nasp.cost_model import load_cost_model
    from nasp.errors import NaspError

    if cfg.cost_table is None:
        raise NaspError("--latency-target needs a cost table to predict latency",
                        "give --cost-table: `nasp profile` on this machine, or `nasp costs fit` "
                        "from measured networks")
    return load_cost_model(cfg.cost_table, space or get_space(cfg.space))


def latency_budget(cfg: StrategyOptions, space: SearchSpace | None = None) -> LatencyBudget | None:
    """The run's latency budget (``--latency-target``), checked against the cheapest
    architecture the model predicts: a target below it cannot be met and fails here."""
    if cfg.latency_target is None:
        return None
    from nasp.errors import NaspError

    model = cost_model(cfg, space)
    margin = cfg.latency_margin
    if margin is None:  # auto: the fit's own under-prediction on cells it did not see
        margin = float(model.fit.get("loo_excess_q90") or 0.0)
        margin = 0.0 if margin < 1e-6 else margin  # an exactly additive device: rounding
    budget = LatencyBudget(model, cfg.latency_target, margin, cfg.latency_step)
    lowest, cheapest = model.cheapest()
    if lowest > budget.aim_ms:
        what = "the cheapest architecture"
        if cheapest is not None:
            from nasp.strategies.discretize import selection_to_genotype

            geno = selection_to_genotype(cheapest, model.cells())
            what = f"the cheapest cell, {geno.arch_str if geno.family == 'nb201' else geno},"
        aim = "" if margin == 0 else f" (aiming at {budget.aim_ms:.3f} ms with margin {margin:.3f})"
        raise NaspError(f"latency target {cfg.latency_target:g} ms{aim} is below what {what} "
                        f"of space {cfg.space} takes: {lowest:.3f} ms predicted",
                        f"use --latency-target {lowest * (1 + margin):.3f} or more")
    return budget


def build_strategy(cfg: StrategyOptions, device: torch.device | str = "cpu",
                   space: SearchSpace | None = None,
                   costs: Mapping[str, torch.Tensor] | None = None) -> Strategy:
    """The run's strategy; cheap (no network, no data), so bad options fail before any work.
    ``space``: a space that is no registry entry (a user model's); ``costs``: its raw costs."""
    space = space or get_space(cfg.space)
    setup = StrategySetup(space=space, device=torch.device(device), seed=cfg.seed,
                          epochs=cfg.epochs, arch_lr=cfg.arch_lr, arch_betas=cfg.arch_betas,
                          arch_weight_decay=cfg.arch_weight_decay, lambda_cost=cfg.lambda_cost,
                          costs=regularizer_costs(cfg, space, costs),
                          budget=latency_budget(cfg, space))
    return create_strategy(cfg.strategy, setup, cfg.strategy_options)
