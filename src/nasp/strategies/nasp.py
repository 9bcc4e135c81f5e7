"""NASP: differentiable search by proximal iterations (Algorithm 1 of the paper).

Per iteration:
1. Ā = prox(A): the discrete architecture (``discretize``), cached from the previous step;
2. A ← clip_[0,1](A − Adam(∇_Ā L_val(w, Ā) + ∇_Ā R(Ā))): the validation gradient taken *at Ā*,
   no second-order term. The gradient of an unselected op k on edge e is ⟨∂L/∂s_e, op_k(x_e)⟩;
   those ops are executed without an autograd graph (PROBE), never back-propagated through,
   and ``autograd.grad`` asks for Ā only, so no weight gradient is computed;
3. Ā = prox(A) again;
4. the weight step runs the selected op of each kept edge only (the loop does it with
   ``weighting()``); ops that do not run get no gradient, so SGD leaves them untouched.
The result is the last Ā, exported exactly (no softmax re-ranking).
"""

from __future__ import annotations

from typing import Any

import torch

from nasp.genotype import Genotype
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import STRATEGIES, ArchContext, Strategy, check_options
from nasp.strategies.discretize import Selection, discretize, selection_to_genotype
from nasp.strategies.regularizer import op_costs, size_penalty
from nasp.supernet.weighting import CellWeighting, Weighting, selection_plan


def init_continuous(
    space: SearchSpace, device: torch.device, seed: int, init: float, noise: float
) -> dict[str, torch.Tensor]:
    """A = init + noise·U(-1,1), seeded; the released code used 0.5 exactly, which hands every
    first argmax to op 0 - the noise makes the first architecture position-free."""
    g = torch.Generator().manual_seed(seed + 7919)
    out = {}
    for name, cell in space.cells.items():
        a = init + noise * (2 * torch.rand(cell.num_edges, cell.num_ops, generator=g) - 1)
        out[name] = a.clamp_(0, 1).to(device)
    return out


@STRATEGIES.register("nasp")
class NASP(Strategy):
    """Continuous A in [0,1], discrete Ā for every forward pass."""

    name = "nasp"
    probe_unselected = True  # lean architecture gradient for every (edge, op)

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
        init: float = 0.5,
        init_noise: float = 1e-3,
        **options: Any,
    ) -> None:
        super().__init__(space, device)
        check_options(self.name, options, ("init", "init_noise"))
        self.A = init_continuous(space, self.device, seed, init, init_noise)
        self.optimizer = torch.optim.Adam(
            list(self.A.values()), lr=arch_lr, betas=tuple(arch_betas),
            weight_decay=arch_weight_decay)
        self.lambda_params = float(lambda_params)
        self.costs = {name: op_costs(cell) for name, cell in self.cells.items()}
        self._refresh()

    # Ā and the host-side selection are derived state: recomputed whenever A changes.
    def _refresh(self) -> None:
        self.bar: dict[str, torch.Tensor] = {}
        self.selection: dict[str, Selection] = {}
        for name, cell in self.cells.items():
            self.bar[name], self.selection[name] = discretize(self.A[name], cell)

    def weighting(self) -> Weighting:
        return {
            name: CellWeighting(None, selection_plan(self.selection[name], cell.num_ops))
            for name, cell in self.cells.items()
        }

    def arch_weighting(self, bar: dict[str, torch.Tensor]) -> Weighting:
        return {
            name: CellWeighting(
                bar[name],
                selection_plan(self.selection[name], cell.num_ops, probe=self.probe_unselected),
            )
            for name, cell in self.cells.items()
        }

    def arch_gradient(self, ctx: ArchContext, val_batch: Any) -> dict[str, torch.Tensor]:
        """∇_Ā (L_val(w, Ā) + R(Ā)) with Ā as a leaf: only Ā's gradient is computed."""
        bar = {name: b.clone().requires_grad_(True) for name, b in self.bar.items()}
        loss = ctx.loss(val_batch, self.arch_weighting(bar))
        penalty = size_penalty(bar, self.costs, self.lambda_params)
        if penalty is not None:
            loss = loss + penalty
        grads = torch.autograd.grad(loss, list(bar.values()))
        return dict(zip(bar, grads))

    def apply_gradient(self, grads: dict[str, torch.Tensor]) -> None:
        for name, a in self.A.items():
            a.grad = grads[name]
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.project()
        self._refresh()

    def project(self) -> None:
        """The proximal step's box constraint: A stays in [0, 1]."""
        with torch.no_grad():
            for a in self.A.values():
                a.clamp_(0.0, 1.0)

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        self.apply_gradient(self.arch_gradient(ctx, val_batch))

    def genotype(self) -> Genotype:
        return selection_to_genotype(self.selection, self.cells)

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {"A": self.A[name], "A_bar": self.bar[name]} for name in self.cells}

    def parameters(self) -> list[torch.Tensor]:
        return list(self.A.values())

    def state_dict(self) -> dict[str, Any]:
        return {"A": {k: v.detach().clone() for k, v in self.A.items()},
                "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        with torch.no_grad():
            for k, v in state["A"].items():
                self.A[k].copy_(v)
        self.optimizer.load_state_dict(state["optimizer"])
        self._refresh()
