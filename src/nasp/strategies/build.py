"""A run's strategy from its configuration: the one place a ``SearchConfig`` becomes a
``Strategy``.

The search loop and ``nasp compare`` receive a strategy built here and never read strategy
options themselves. Building is cheap (no network, no data), so it happens before any data is
read: a bad ``--strategy-options`` or cost table fails at once, not after loading a dataset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from nasp.spaces import get_space
from nasp.strategies.base import Strategy, StrategySetup, create_strategy
from nasp.strategies.budget import LatencyBudget

if TYPE_CHECKING:
    from nasp.configs import SearchConfig


def regularizer_costs(cfg: SearchConfig) -> dict[str, torch.Tensor]:
    """The normalised (edges, ops) costs per cell type of the run's regularizer: without a
    cost table, ``params`` are the release's counts (width 12, the edge's stride; so
    ``--lambda-params`` is exactly ``--cost params --lambda-cost``); with one, each op's cost
    summed over the evaluation-network positions of its cell type. A latency budget charges
    its cost model's latencies (negative fitted entries count as 0)."""
    from nasp.strategies.regularizer import normalise, param_costs

    space = get_space(cfg.space)
    if cfg.latency_target is not None:
        model = cost_model(cfg)
        return {name: normalise(torch.from_numpy(m).clamp_min(0.0))
                for name, m in model.cost.items()}
    if cfg.lambda_cost == 0:
        return {}
    if cfg.cost_table is None:
        raw = {name: param_costs(cell, space.op_registry) for name, cell in space.cells.items()}
    elif cfg.cost == "latency":
        raw = {k: torch.from_numpy(v) for k, v in cost_model(cfg).cost.items()}
    else:
        from nasp.costs import cost_matrices, load_table

        raw = cost_matrices(load_table(cfg.cost_table), space, cfg.cost)
    return {name: normalise(r) for name, r in raw.items()}


def cost_model(cfg: SearchConfig):  # noqa: ANN201 - nasp.cost_model.CostModel
    """The run's latency model: its --cost-table, profiled or fitted, of the run's space."""
    from nasp.cost_model import load_cost_model
    from nasp.errors import NaspError

    if cfg.cost_table is None:
        raise NaspError("--latency-target needs a cost table to predict latency",
                        "give --cost-table: `nasp profile` on this machine, or `nasp costs fit` "
                        "from measured networks")
    return load_cost_model(cfg.cost_table, get_space(cfg.space))


def latency_budget(cfg: SearchConfig) -> LatencyBudget | None:
    """The run's latency budget (``--latency-target``), checked against the cheapest
    architecture the model predicts: a target below it cannot be met and fails here."""
    if cfg.latency_target is None:
        return None
    from nasp.errors import NaspError

    model = cost_model(cfg)
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


def build_strategy(cfg: SearchConfig, device: torch.device | str = "cpu") -> Strategy:
    """The run's strategy; cheap (no network, no data), so bad options fail before any work."""
    setup = StrategySetup(space=get_space(cfg.space), device=torch.device(device), seed=cfg.seed,
                          epochs=cfg.epochs, arch_lr=cfg.arch_lr, arch_betas=cfg.arch_betas,
                          arch_weight_decay=cfg.arch_weight_decay, lambda_cost=cfg.lambda_cost,
                          costs=regularizer_costs(cfg), budget=latency_budget(cfg))
    return create_strategy(cfg.strategy, setup, cfg.strategy_options)
