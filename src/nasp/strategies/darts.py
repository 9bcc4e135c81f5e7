"""DARTS (Liu et al.): softmax-relaxed mixed edges, first (``darts``) or second order (``darts2``).

First order: α ← Adam(∇_α L_val(w, α)). Second order: the gradient at the unrolled weights
w' = w − ξ(momentum·buf + ∇_w L_train(w, α) + wd·w), minus ξ times a finite-difference
Hessian-vector product: ∇_α L_val(w', α) − ξ (∇_α L_train(w⁺) − ∇_α L_train(w⁻)) / 2ε with
w± = w ± ε ∇_{w'} L_val and ε = 0.01 / ‖∇_{w'} L_val‖ (a zero norm gives a zero product). The
look-ahead runs in place on the network's weights, which are restored exactly afterwards; the
loop keeps batch-norm statistics frozen during every architecture step. The final genotype
follows DARTS's derivation: the strongest final op (never ``none`` where edges are chosen) per
edge, the two strongest edges per node, ties broken as NASP's (``discretize``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nasp.strategies.arch_params import ArchParams
from nasp.strategies.base import ArchContext, Strategy, StrategySetup, arch_grad, register
from nasp.strategies.discretize import select, tie_priority, to_record
from nasp.supernet.weighting import CellWeighting, Weighting, dense_plan


@register("darts")
class DARTS(Strategy):
    """Every op of every edge runs, weighted by softmax(α)."""

    network = "the softmax(α) mixture of every operation (the supernet, not the genotype)"
    checkpointed = ("arch",)
    takes_budget = True
    second_order: ClassVar[bool] = False

    def __init__(self, setup: StrategySetup, **options: Any) -> None:
        super().__init__(setup, **options)
        g = torch.Generator().manual_seed(setup.seed + 7919)
        self.arch = ArchParams({name: 1e-3 * torch.randn(c.num_edges, c.num_ops, generator=g)
                                for name, c in self.cells.items()}, setup)
        self.plans = {name: dense_plan(c.num_edges, c.num_ops) for name, c in self.cells.items()}
        self.priority = tie_priority(self.cells, setup.seed)

    def _weighting(self, alpha: dict[str, torch.Tensor]) -> Weighting:
        return {name: CellWeighting(a.softmax(dim=-1), self.plans[name])
                for name, a in alpha.items()}

    def weighting(self) -> Weighting:
        return self._weighting({k: v.detach() for k, v in self.arch.items()})

    def _val_loss(self, ctx: ArchContext, batch: Any, alpha: dict[str, torch.Tensor]):
        w = self._weighting(alpha)
        penalty = self.arch.penalty({k: v.weights for k, v in w.items()})  # type: ignore[misc]
        loss = ctx.loss(batch, w)
        return loss if penalty is None else loss + penalty

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        alpha = self.arch.leaves()
        if self.second_order:
            grads = self.unrolled_gradient(ctx, train_batch, val_batch, alpha)
        else:
            grads = arch_grad(self._val_loss(ctx, val_batch, alpha), list(alpha.values()))
        ctx.reduce(grads)
        self.arch.step(grads)
        if self.arch.budget is not None:  # λ's dual-ascent step on the derived architecture
            self.arch.observe(self._selection()[1])

    def unrolled_gradient(self, ctx: ArchContext, train_batch: Any, val_batch: Any,
                          alpha: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        """DARTS's second-order hypergradient, computed in place on the network's weights."""
        params = ctx.weights
        group = ctx.optimizer.param_groups[0]
        lr, momentum, wd = group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        fixed = {k: v.detach() for k, v in alpha.items()}
        alphas = list(alpha.values())
        original = [p.detach().clone() for p in params]
        try:
            # w' = w - ξ (momentum·buf + ∇_w L_train + wd·w), with ∇ averaged over ranks
            g_train = torch.autograd.grad(ctx.loss(train_batch, self._weighting(fixed)), params,
                                          allow_unused=True)
            g_train = [torch.zeros_like(p) if g is None else g for p, g in zip(params, g_train)]
            ctx.reduce(g_train)
            with torch.no_grad():
                for p, w0, g in zip(params, original, g_train):
                    step = g + wd * w0
                    buf = ctx.optimizer.state.get(p, {}).get("momentum_buffer")
                    if buf is not None and momentum:
                        step = step + momentum * buf
                    p.copy_(w0 - lr * step)
            grads = torch.autograd.grad(self._val_loss(ctx, val_batch, alpha), alphas + params,
                                        allow_unused=True)
            d_alpha = [torch.zeros_like(a) if g is None else g
                       for a, g in zip(alphas, grads[: len(alphas)])]
            d_w = [torch.zeros_like(p) if g is None else g
                   for p, g in zip(params, grads[len(alphas):])]
            ctx.reduce(d_w)
            eps = 0.01 / torch.cat([g.flatten() for g in d_w]).norm().clamp_min(1e-12)
            hvp = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, w0, g in zip(params, original, d_w):
                        p.copy_(w0 + sign * eps * g)
                loss = ctx.loss(train_batch, self._weighting(alpha))
                hvp.append(arch_grad(loss, alphas))
        finally:
            with torch.no_grad():
                for p, w in zip(params, original):
                    p.copy_(w)
        return [da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, *hvp)]

    def _selection(self) -> tuple[dict, dict]:
        """(softmax(α) per cell, DARTS's derivation from it, without a budget)."""
        probs = {name: self.arch[name].detach().softmax(dim=-1).float().cpu().numpy()
                 for name in self.cells}
        return probs, {name: select(probs[name], cell, self.priority[name])
                       for name, cell in self.cells.items()}

    def genotype(self) -> Any:
        probs, sel = self._selection()
        # with a latency budget, the derivation is projected into it (nasp.strategies.budget)
        return to_record(self.arch.within_budget(probs, sel, self.priority), self.space)

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {"alpha": a, "softmax": a.softmax(dim=-1)} for name, a in self.arch.items()}


@register("darts2")
class DARTS2(DARTS):
    """DARTS second order (unrolled), for ``nasp compare --strategies ...,darts2``."""

    second_order = True
