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
over all ops (DARTS's edge ranking, so the two derivations compare like for like). Ops outside
``CellSpec.final_ops`` never win: where edges are chosen, an edge left with only ``none`` ranks
last and gets its strongest real op; in nb201 (every edge kept) ``none`` can win an edge.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nasp.errors import NaspError
from nasp.strategies.arch_params import ArchParams
from nasp.strategies.base import ArchContext, Strategy, StrategySetup, arch_grad, register
from nasp.strategies.discretize import select, tie_priority, to_record
from nasp.supernet.weighting import CellWeighting, Weighting, masked_plan

# option -> (check, rule shown when it fails)
_RULES = {
    "t0": (lambda v, o: v > 0, "a positive number"),
    "t_final": (lambda v, o: 0 < v <= o["t0"], "in (0, t0]"),
    "gamma": (lambda v, o: 0 < v <= 1, "in (0, 1]"),
    "theta0": (lambda v, o: 0 < v < 1, "in (0, 1)"),
    "theta_decay": (lambda v, o: 0 < v <= 1, "in (0, 1]"),
    "init_scale": (lambda v, o: v >= 0, ">= 0"),
}


@register("asap")
class ASAP(Strategy):
    """Annealed softmax over the alive ops of each edge, with gradual pruning."""

    options: ClassVar[dict[str, Any]] = {"t0": 1.0, "t_final": 1e-3, "gamma": None,
                                         "theta0": 0.05, "theta_decay": 0.9, "init_scale": 1e-3}
    network = ("the annealed softmax(α/T) mixture of the ops not yet pruned (the genotype's "
               "network only once every edge has one op left)")
    checkpointed = ("arch", "alive", "epoch")
    takes_budget = True

    def __init__(self, setup: StrategySetup, **options: Any) -> None:
        super().__init__(setup, **options)
        o = self.opts
        for name, (ok, rule) in _RULES.items():
            v = o[name]
            if v is not None and (isinstance(v, bool) or not isinstance(v, int | float)
                                  or not ok(v, o)):
                raise NaspError(f"invalid ASAP option {name}={v!r}",
                                f"{name} must be {rule} (--strategy-options)")
        self.t0, self.theta0, self.theta_decay = o["t0"], o["theta0"], o["theta_decay"]
        # by default T reaches t_final at the last epoch, whatever the budget
        self.gamma = o["gamma"] if o["gamma"] is not None else \
            (o["t_final"] / self.t0) ** (1.0 / max(setup.epochs - 1, 1))
        g = torch.Generator().manual_seed(setup.seed + 7919)
        self.arch = ArchParams({name: o["init_scale"] * torch.randn(c.num_edges, c.num_ops,
                                                                    generator=g)
                                for name, c in self.cells.items()}, setup)
        self.alive = {name: torch.ones(c.num_edges, c.num_ops, dtype=torch.bool)
                      for name, c in self.cells.items()}
        self.priority = tie_priority(self.cells, setup.seed)
        self.epoch = 0
        self.restored()

    # --- schedule ---------------------------------------------------------------------------
    @property
    def temperature(self) -> float:
        return self.t0 * self.gamma ** self.epoch

    @property
    def threshold(self) -> float:
        return self.theta0 * self.theta_decay ** self.epoch

    def start_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def restored(self) -> None:
        """Host plans and device masks follow ``alive``; recomputed only when ops are pruned."""
        self.plans = {name: masked_plan(a.tolist()) for name, a in self.alive.items()}
        self.masks = {name: a.to(self.device) for name, a in self.alive.items()}

    def _mix(self, alpha: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Φ = softmax(α/T) over the alive ops of each edge; exactly 0 for pruned ones."""
        t = self.temperature
        return {name: (a / t).masked_fill(~self.masks[name], float("-inf")).softmax(dim=-1)
                for name, a in alpha.items()}

    def _weighting(self, mix: dict[str, torch.Tensor]) -> Weighting:
        return {name: CellWeighting(w, self.plans[name]) for name, w in mix.items()}

    def weighting(self) -> Weighting:
        return self._weighting(self._mix({k: v.detach() for k, v in self.arch.items()}))

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        alpha = self.arch.leaves()
        mix = self._mix(alpha)
        loss = ctx.loss(val_batch, self._weighting(mix))
        penalty = self.arch.penalty(mix)
        grads = arch_grad(loss if penalty is None else loss + penalty, list(alpha.values()))
        ctx.reduce(grads)
        self.arch.step(grads)
        self.prune()
        if self.arch.budget is not None:  # λ's dual-ascent step on the derived architecture
            self.arch.observe(self._selection()[1])

    def prune(self, threshold: float | None = None) -> int:
        """Prune every alive op whose weight is under the threshold (never an edge's strongest
        op); returns how many were pruned. ``threshold=1`` leaves one op per edge."""
        theta = self.threshold if threshold is None else threshold
        mix = self._mix({k: v.detach() for k, v in self.arch.items()})
        pruned = 0
        for name, w in mix.items():
            w = w.float().cpu()
            lead = torch.zeros_like(self.alive[name])
            lead[torch.arange(len(w)), w.argmax(dim=1)] = True
            drop = self.alive[name] & (w < theta) & ~lead
            if drop.any():
                self.alive[name] &= ~drop
                pruned += int(drop.sum())
        if pruned:
            self.restored()
        return pruned

    def end_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        if epoch + 1 >= self.setup.epochs:
            self.prune(threshold=1.0)  # the budget is spent: T → 0 keeps each edge's leader
        metrics.update(asap_temperature=self.temperature, asap_threshold=self.threshold,
                       asap_alive_ops=int(sum(int(a.sum()) for a in self.alive.values())))

    def finished(self) -> bool:
        return all(bool((a.sum(dim=1) == 1).all()) for a in self.alive.values())

    # --- result -----------------------------------------------------------------------------
    def _selection(self) -> tuple[dict, dict]:
        values, sel = {}, {}
        for name, cell in self.cells.items():
            probs = self.arch[name].detach().float().softmax(dim=-1).cpu()
            # survivors in [0, 1], pruned ops shifted below any survivor: the winner of an edge
            # is its strongest survivor (softmax is monotone in α), its strength the DARTS rank
            values[name] = (probs - 2.0 * (~self.alive[name]).float()).numpy()
            sel[name] = select(values[name], cell, self.priority[name])
        return values, sel

    def genotype(self) -> Any:
        values, sel = self._selection()
        # with a latency budget, projected into it (survivors first: pruned ops weigh -2)
        return to_record(self.arch.within_budget(values, sel, self.priority), self.space)

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        mix = self._mix({k: v.detach() for k, v in self.arch.items()})
        return {name: {"alpha": self.arch[name], "weights": mix[name]} for name in self.cells}
