"""Continuous architecture parameters: what NASP, PA, PA-lazy, DARTS and ASAP share.

Per cell type one (edges, ops) tensor, one optimizer over all of them, and the cost penalty of
the regularizer on whatever weighting a strategy charges (Ā for NASP and PA, softmax(α) for
DARTS, ASAP's annealed mixture). With a latency budget, λ is the budget's multiplier (dual
ascent after every step, ``observe``) and the held architecture is projected into the budget
(``within_budget``): ``nasp.strategies.budget``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch

from nasp.errors import NaspError
from nasp.strategies.base import StrategySetup
from nasp.strategies.budget import BudgetState, project
from nasp.strategies.regularizer import cost_penalty

Selection = tuple[int, ...]

OPTIMIZERS = ("adam", "sgd")


class ArchParams:
    """Named architecture tensors, their optimizer and the cost penalty."""

    def __init__(self, tensors: Mapping[str, torch.Tensor], setup: StrategySetup,
                 optimizer: str = "adam") -> None:
        if optimizer not in OPTIMIZERS:
            raise NaspError(f"unknown architecture step {optimizer!r}",
                            'use --strategy-options \'{"step": "adam"}\' or "sgd"')
        self.tensors = {k: v.to(setup.device, setup.dtype) for k, v in tensors.items()}
        params = list(self.tensors.values())
        if optimizer == "sgd":  # a plain (Euclidean) gradient step, as eq. 9 of the paper
            self.optimizer: torch.optim.Optimizer = torch.optim.SGD(params, lr=setup.arch_lr)
        else:
            self.optimizer = torch.optim.Adam(params, lr=setup.arch_lr,
                                              betas=tuple(setup.arch_betas),
                                              weight_decay=setup.arch_weight_decay)
        self.costs = {k: v.to(setup.device) for k, v in setup.costs.items()}
        self.cells = dict(setup.space.cells)
        self.budget = None if setup.budget is None else \
            BudgetState(setup.budget, setup.lambda_cost)
        self._lam = float(setup.lambda_cost)

    @property
    def lam(self) -> float:
        """The regularizer's weight: fixed, or the budget's multiplier (dual ascent)."""
        return self._lam if self.budget is None else self.budget.lam

    def __getitem__(self, name: str) -> torch.Tensor:
        return self.tensors[name]

    def items(self):  # noqa: ANN201 - dict view
        return self.tensors.items()

    def leaves(self) -> dict[str, torch.Tensor]:
        """Detached copies that require grad: the graph of a step starts here."""
        return {k: v.detach().requires_grad_(True) for k, v in self.tensors.items()}

    def penalty(self, weights: Mapping[str, torch.Tensor]) -> torch.Tensor | None:
        return cost_penalty(weights, self.costs, self.lam)

    def penalty_gradient(self, weights: Mapping[str, torch.Tensor]) -> list[torch.Tensor] | None:
        """∇ of the penalty at ``weights`` (2 λ c W, in ``tensors`` order), None when λ = 0."""
        if self.lam == 0 or not self.costs:
            return None
        return [2.0 * self.lam * weights[k] * self.costs[k].to(weights[k].device,
                                                               weights[k].dtype)
                for k in self.tensors]

    # --- a latency budget (nasp.strategies.budget) ------------------------------------------
    def observe(self, selections: Mapping[str, Selection], dual: bool = True) -> None:
        """After an architecture step: record the unprojected architecture's predicted latency
        and (``dual``) update λ by dual ascent on it; nothing without a budget."""
        if self.budget is not None:
            self.budget.observe(selections, self.cells, dual)

    def within_budget(self, values: Mapping[str, torch.Tensor | np.ndarray],
                      selections: Mapping[str, Selection],
                      priority: Mapping[str, Any] | None = None) -> dict[str, Selection]:
        """The architecture a strategy holds: ``selections`` projected into the budget
        (``selections`` itself without one)."""
        if self.budget is None:
            return dict(selections)
        arrays = {k: v.detach().float().cpu().numpy() if isinstance(v, torch.Tensor)
                  else np.asarray(v) for k, v in values.items()}
        return project(self.budget.budget, arrays, selections, self.cells, priority)

    def step(self, grads: Sequence[torch.Tensor]) -> None:
        """One optimizer step with the given gradients (in ``tensors`` order)."""
        for a, g in zip(self.tensors.values(), grads, strict=True):
            a.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def parameters(self) -> list[torch.Tensor]:
        return list(self.tensors.values())

    def state_dict(self) -> dict[str, Any]:
        out = {"tensors": {k: v.detach().clone() for k, v in self.tensors.items()},
               "optimizer": self.optimizer.state_dict()}
        if self.budget is not None:  # λ of the dual ascent: a resume continues it exactly
            out["budget"] = self.budget.state_dict()
        return out

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["tensors"].items():
                self.tensors[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        if self.budget is not None:
            self.budget.load_state_dict(state["budget"])
