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


def regularizer_costs(cfg: StrategyOptions, space: SearchSpace | None = None,
                      raw: Mapping[str, torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The normalised (edges, ops) costs per cell type of the run's regularizer: without a
    cost table, ``params`` are the release's counts (width 12, the edge's stride; so
    ``--lambda-params`` is exactly ``--cost params --lambda-cost``); with one, each op's cost
    summed over the evaluation-network positions of its cell type. ``raw``: costs measured
    elsewhere (a user model's candidates, measured by its task)."""
    from nasp.strategies.regularizer import normalise, normalise_jointly, param_costs

    if cfg.lambda_cost == 0:
        return {}
    space = space or get_space(cfg.space)
    if raw is None and cfg.cost_table is None:
        raw = {name: param_costs(cell, space.op_registry) for name, cell in space.cells.items()}
    elif raw is None:
        from nasp.costs import cost_matrices, load_table

        raw = cost_matrices(load_table(cfg.cost_table), space, cfg.cost)
    if space.family == "model":  # the model's choices compete for one budget
        return normalise_jointly(raw)
    return {name: normalise(r) for name, r in raw.items()}


def build_strategy(cfg: StrategyOptions, device: torch.device | str = "cpu",
                   space: SearchSpace | None = None,
                   costs: Mapping[str, torch.Tensor] | None = None) -> Strategy:
    """The run's strategy; cheap (no network, no data), so bad options fail before any work.
    ``space``: a space that is no registry entry (a user model's); ``costs``: its raw costs."""
    space = space or get_space(cfg.space)
    setup = StrategySetup(space=space, device=torch.device(device), seed=cfg.seed,
                          epochs=cfg.epochs, arch_lr=cfg.arch_lr, arch_betas=cfg.arch_betas,
                          arch_weight_decay=cfg.arch_weight_decay, lambda_cost=cfg.lambda_cost,
                          costs=regularizer_costs(cfg, space, costs))
    return create_strategy(cfg.strategy, setup, cfg.strategy_options)
