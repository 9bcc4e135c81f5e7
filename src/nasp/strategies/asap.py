"""ASAP (Noy et al., 2019): architecture search, anneal and prune.

Each edge mixes its *alive* ops with weights Φ = softmax(α/T) (pruned ops masked out), a
DARTS-style first-order step trains α on validation batches, the temperature T is annealed so
Φ sharpens towards one op, and an op whose weight falls under a threshold θ is pruned for good:
it is never executed again (SKIP in the plan), so epochs get cheaper as the search goes on. The
search ends (``finished()``) when every edge has one op left.

Schedule (per epoch t = 0, 1, ..., E−1; pruning is checked after every architecture step):

* temperature T_t = t0 · γ^t. By default γ is derived from the run's epochs so that T reaches
  ``t_final`` at the last epoch, γ = (t_final / t0)^(1 / (E − 1)): the anneal fits any budget.
* threshold θ_t = theta0 · theta_decay^t (decaying, as ASAP prescribes). An op k is pruned when
  Φ_k < θ_t; the strongest op of an edge is never pruned. Pruning k against the leader needs a
  gap α_lead − α_k ≳ T_t · ln(1/θ_t): T falls exponentially and ln(1/θ) grows only linearly,
  so that gap shrinks to 0 and every edge with distinct α converges. A lower θ prunes later and
  more cautiously.
* when the last epoch ends, whatever is still alive is annealed out (T → 0 keeps only each
  edge's strongest op), so the budget always ends in one op per edge.

Defaults (set so the quick preset, 10 epochs at arch lr 3e-3, prunes gradually from about
epoch 3 and converges by its end): t0 = 1.0, t_final = 1e-3 (γ ≈ 0.46 for 10 epochs),
theta0 = 0.05, theta_decay = 0.9, init_scale = 1e-3 (α = init_scale · N(0, 1), as DARTS).
Options are given as ``--strategy-options '{"t0": 2.0, "gamma": 0.8}'``.

Final genotype: per edge the surviving op (among several survivors - before convergence - the
largest α); per node the ``keep`` edges whose surviving op has the largest softmax(α) at T = 1
over all ops (DARTS's edge ranking, so the two derivations compare like for like). ``none``
never names an edge's op: an edge whose only survivor is ``none`` ranks last and gets its
strongest real op.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import STRATEGIES, ArchContext, Strategy, check_options
from nasp.strategies.discretize import select, selection_to_genotype
from nasp.strategies.regularizer import op_costs, size_penalty
from nasp.supernet.weighting import CellWeighting, Weighting, masked_plan

_DEFAULTS: dict[str, float | None] = {
    "t0": 1.0, "t_final": 1e-3, "gamma": None, "theta0": 0.05, "theta_decay": 0.9,
    "init_scale": 1e-3,
}


def _check_value(name: str, value: float, ok: bool, rule: str) -> float:
    if not ok:
        raise NaspError(f"invalid ASAP option {name}={value!r}",
                        f"{name} must be {rule} (--strategy-options)")
    return float(value)


@STRATEGIES.register("asap")
class ASAP(Strategy):
    """Annealed softmax over the alive ops of each edge, with gradual pruning."""

    name = "asap"

    def __init__(
        self,
        space: SearchSpace,
        device: torch.device,
        *,
        seed: int = 0,
        arch_lr: float = 3e-4,
        arch_betas: tuple[float, float] = (0.5, 0.999),
        arch_weight_decay: float = 1e-3,
        lambda_params: float = 0.0,
        epochs: int = 50,
        **options: Any,
    ) -> None:
        super().__init__(space, device)
        check_options(self.name, options, _DEFAULTS)
        opts = {**_DEFAULTS, **{k: v for k, v in options.items() if v is not None}}
        num = (int, float)
        self.t0 = _check_value("t0", opts["t0"], isinstance(opts["t0"], num) and opts["t0"] > 0,
                               "a positive number")
        self.epochs = max(int(epochs), 1)
        if opts["gamma"] is None:
            t_final = _check_value(
                "t_final", opts["t_final"],
                isinstance(opts["t_final"], num) and 0 < opts["t_final"] <= self.t0,
                f"in (0, t0={self.t0:g}]")
            self.gamma = (t_final / self.t0) ** (1.0 / max(self.epochs - 1, 1))
        else:
            g = opts["gamma"]
            self.gamma = _check_value("gamma", g, isinstance(g, num) and 0 < g <= 1, "in (0, 1]")
        th = opts["theta0"]
        self.theta0 = _check_value("theta0", th, isinstance(th, num) and 0 < th < 1, "in (0, 1)")
        d = opts["theta_decay"]
        self.theta_decay = _check_value("theta_decay", d, isinstance(d, num) and 0 < d <= 1,
                                        "in (0, 1]")
        s = opts["init_scale"]
        init_scale = _check_value("init_scale", s, isinstance(s, num) and s >= 0, ">= 0")

        g = torch.Generator().manual_seed(seed + 7919)
        self.alpha = {
            name: (init_scale * torch.randn(cell.num_edges, cell.num_ops, generator=g))
            .to(self.device)
            for name, cell in self.cells.items()
        }
        self.optimizer = torch.optim.Adam(
            list(self.alpha.values()), lr=arch_lr, betas=tuple(arch_betas),
            weight_decay=arch_weight_decay)
        self.lambda_params = float(lambda_params)
        self.costs = {name: op_costs(cell) for name, cell in self.cells.items()}
        self.alive = {name: np.ones((c.num_edges, c.num_ops), dtype=bool)
                      for name, c in self.cells.items()}
        self.epoch = 0
        self._sync_alive()

    # --- schedule ---------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return self.t0 * self.gamma ** self.epoch

    @property
    def threshold(self) -> float:
        return self.theta0 * self.theta_decay ** self.epoch

    def start_epoch(self, epoch: int, epochs: int) -> None:
        self.epoch = epoch

    # --- weights ----------------------------------------------------------------------------
    def _sync_alive(self) -> None:
        """Host plans and device masks follow ``alive``; recomputed only when ops are pruned."""
        self.plans = {name: masked_plan(a.tolist()) for name, a in self.alive.items()}
        self.masks = {name: torch.from_numpy(a.copy()).to(self.device)
                      for name, a in self.alive.items()}

    def _mix(self, alpha: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Φ = softmax(α/T) over the alive ops of each edge; exactly 0 for pruned ones."""
        t = self.temperature
        return {name: (a / t).masked_fill(~self.masks[name], float("-inf")).softmax(dim=-1)
                for name, a in alpha.items()}

    def _weighting(self, mix: dict[str, torch.Tensor]) -> Weighting:
        return {name: CellWeighting(w, self.plans[name]) for name, w in mix.items()}

    def weighting(self) -> Weighting:
        return self._weighting(self._mix({k: v.detach() for k, v in self.alpha.items()}))

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        alpha = {k: v.detach().requires_grad_(True) for k, v in self.alpha.items()}
        mix = self._mix(alpha)
        loss = ctx.loss(val_batch, self._weighting(mix))
        penalty = size_penalty(mix, self.costs, self.lambda_params)
        if penalty is not None:
            loss = loss + penalty
        grads = torch.autograd.grad(loss, list(alpha.values()))
        for a, g in zip(self.alpha.values(), grads, strict=True):
            a.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.prune()

    def prune(self, threshold: float | None = None) -> int:
        """Prune every alive op whose weight is under the threshold (never an edge's strongest
        op); returns how many were pruned. ``threshold=1`` leaves one op per edge."""
        theta = self.threshold if threshold is None else threshold
        mix = self._mix({k: v.detach() for k, v in self.alpha.items()})
        pruned = 0
        for name, w in mix.items():
            w = w.float().cpu().numpy()
            lead = np.zeros_like(self.alive[name])
            lead[np.arange(len(w)), w.argmax(axis=1)] = True
            drop = self.alive[name] & (w < theta) & ~lead
            if drop.any():
                self.alive[name] &= ~drop
                pruned += int(drop.sum())
        if pruned:
            self._sync_alive()
        return pruned

    def end_epoch(self, epoch: int, epochs: int, metrics: dict[str, Any]) -> None:
        if epoch + 1 >= epochs:
            self.prune(threshold=1.0)  # the budget is spent: T → 0 keeps each edge's leader
        metrics["asap_temperature"] = self.temperature
        metrics["asap_threshold"] = self.threshold
        metrics["asap_alive_ops"] = self.alive_ops()

    def alive_ops(self) -> int:
        return int(sum(a.sum() for a in self.alive.values()))

    def finished(self) -> bool:
        return all(bool((a.sum(axis=1) == 1).all()) for a in self.alive.values())

    # --- result -----------------------------------------------------------------------------
    def genotype(self) -> Genotype:
        sel = {}
        for name, cell in self.cells.items():
            probs = self.alpha[name].detach().float().softmax(dim=-1).cpu().numpy()
            # survivors in [0, 1], pruned ops shifted below any survivor: the winner of an edge
            # is its strongest survivor (softmax is monotone in α), its strength the DARTS rank
            values = probs - 2.0 * ~self.alive[name]
            exclude = [cell.ops.index("none")] if "none" in cell.ops else []
            sel[name] = select(values, cell, exclude)
        return selection_to_genotype(sel, self.cells)

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        mix = self._mix({k: v.detach() for k, v in self.alpha.items()})
        return {name: {"alpha": self.alpha[name], "weights": mix[name]} for name in self.cells}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.alpha.values())

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": {k: v.detach().clone() for k, v in self.alpha.items()},
                "optimizer": self.optimizer.state_dict(),
                "alive": {k: v.tolist() for k, v in self.alive.items()}, "epoch": self.epoch}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["alpha"].items():
                self.alpha[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        self.alive = {k: np.array(v, dtype=bool) for k, v in state["alive"].items()}
        self.epoch = int(state.get("epoch", 0))
        self._sync_alive()
