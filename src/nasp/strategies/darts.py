"""DARTS (Liu et al.): softmax-relaxed mixed edges, first or second order.

First order: α ← Adam(∇_α L_val(w, α)). Second order: the gradient at the unrolled weights
w' = w − ξ(momentum·buf + ∇_w L_train(w, α) + wd·w), minus ξ times a finite-difference
Hessian-vector product: ∇_α L_val(w', α) − ξ (∇_α L_train(w⁺) − ∇_α L_train(w⁻)) / 2ε with
w± = w ± ε ∇_{w'} L_val and ε = 0.01 / ‖∇_{w'} L_val‖. The final genotype follows DARTS's
derivation: the strongest non-``none`` op per edge, the two strongest edges per node.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch

from nasp.genotype import Genotype
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import STRATEGIES, ArchContext, Strategy, check_options
from nasp.strategies.discretize import select, selection_to_genotype
from nasp.strategies.regularizer import op_costs, size_penalty
from nasp.supernet.weighting import CellWeighting, Weighting, dense_plan


@STRATEGIES.register("darts")
class DARTS(Strategy):
    name = "darts"
    default_order = 1

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
        darts_order: int | None = None,
        **options: Any,
    ) -> None:
        super().__init__(space, device)
        check_options(self.name, options, ())
        g = torch.Generator().manual_seed(seed + 7919)
        self.alpha = {
            name: (1e-3 * torch.randn(cell.num_edges, cell.num_ops, generator=g)).to(self.device)
            for name, cell in self.cells.items()
        }
        self.optimizer = torch.optim.Adam(
            list(self.alpha.values()), lr=arch_lr, betas=tuple(arch_betas),
            weight_decay=arch_weight_decay)
        self.order = int(darts_order or self.default_order)
        if self.order not in (1, 2):
            from nasp.errors import NaspError

            raise NaspError(f"DARTS order must be 1 or 2, got {self.order}",
                            "use --darts-order 1 or 2 (or --strategy darts2)")
        self.lambda_params = float(lambda_params)
        self.costs = {name: op_costs(cell) for name, cell in self.cells.items()}
        self.plans = {name: dense_plan(c.num_edges, c.num_ops) for name, c in self.cells.items()}

    def _weighting(self, alpha: dict[str, torch.Tensor]) -> Weighting:
        return {name: CellWeighting(a.softmax(dim=-1), self.plans[name])
                for name, a in alpha.items()}

    def weighting(self) -> Weighting:
        return self._weighting({k: v.detach() for k, v in self.alpha.items()})

    def _val_loss(self, ctx: ArchContext, batch: Any, alpha: dict[str, torch.Tensor]):
        w = self._weighting(alpha)
        loss = ctx.loss(batch, w)
        penalty = size_penalty({k: v.weights for k, v in w.items()}, self.costs,
                               self.lambda_params)
        return loss if penalty is None else loss + penalty

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        alpha = {k: v.detach().requires_grad_(True) for k, v in self.alpha.items()}
        if self.order == 1:
            grads = torch.autograd.grad(self._val_loss(ctx, val_batch, alpha),
                                        list(alpha.values()))
        else:
            grads = self.unrolled_gradient(ctx, train_batch, val_batch, alpha)
        for a, g in zip(self.alpha.values(), grads):
            a.grad = g
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def unrolled_gradient(
        self, ctx: ArchContext, train_batch: Any, val_batch: Any, alpha: dict[str, torch.Tensor]
    ) -> list[torch.Tensor]:
        """DARTS's second-order hypergradient, computed in place on the network's weights."""
        params = ctx.weights
        group = ctx.optimizer.param_groups[0]
        lr, momentum, wd = group["lr"], group.get("momentum", 0.0), group.get("weight_decay", 0.0)
        fixed = {k: v.detach() for k, v in alpha.items()}
        alphas = list(alpha.values())
        with _saved(params, ctx.buffers) as original:
            # w' = w - ξ (momentum·buf + ∇_w L_train + wd·w)
            g_train = torch.autograd.grad(ctx.loss(train_batch, self._weighting(fixed)), params,
                                          allow_unused=True)
            with torch.no_grad():
                for p, w0, g in zip(params, original, g_train):
                    step = wd * w0 if g is None else g + wd * w0
                    buf = ctx.optimizer.state.get(p, {}).get("momentum_buffer")
                    if buf is not None and momentum:
                        step = step + momentum * buf
                    p.copy_(w0 - lr * step)
            loss = self._val_loss(ctx, val_batch, alpha)
            grads = torch.autograd.grad(loss, alphas + params, allow_unused=True)
            d_alpha = list(grads[: len(alphas)])
            d_w = [torch.zeros_like(p) if g is None else g
                   for p, g in zip(params, grads[len(alphas):])]
            eps = 0.01 / torch.cat([g.flatten() for g in d_w]).norm()
            hvp = []
            for sign in (1.0, -1.0):
                with torch.no_grad():
                    for p, w0, g in zip(params, original, d_w):
                        p.copy_(w0 + sign * eps * g)
                loss = ctx.loss(train_batch, self._weighting(alpha))
                hvp.append(torch.autograd.grad(loss, alphas))
        return [da - lr * (gp - gm) / (2 * eps) for da, gp, gm in zip(d_alpha, hvp[0], hvp[1])]

    def genotype(self) -> Genotype:
        sel = {}
        for name, cell in self.cells.items():
            probs = self.alpha[name].detach().softmax(dim=-1).float().cpu().numpy()
            exclude = [cell.ops.index("none")] if "none" in cell.ops else []
            sel[name] = select(probs, cell, exclude)
        return selection_to_genotype(sel, self.cells)

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {"alpha": a, "softmax": a.softmax(dim=-1)} for name, a in self.alpha.items()}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.alpha.values())

    def state_dict(self) -> dict[str, Any]:
        return {"alpha": {k: v.detach().clone() for k, v in self.alpha.items()},
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["alpha"].items():
                self.alpha[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])


@STRATEGIES.register("darts2")
class DARTS2(DARTS):
    """DARTS second order under its own name, for ``nasp compare --strategies ...,darts2``."""

    name = "darts2"
    default_order = 2


@contextmanager
def _saved(params: list[torch.Tensor], buffers: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Copies of the weights (yielded) and buffers, restored on exit: look-ahead passes must leave
    the network exactly as they found it, BN running statistics included."""
    weights = [p.detach().clone() for p in params]
    saved_buffers = [b.detach().clone() for b in buffers]
    try:
        yield weights
    finally:
        with torch.no_grad():
            for p, w in zip(params, weights):
                p.copy_(w)
            for b, s in zip(buffers, saved_buffers):
                b.copy_(s)
