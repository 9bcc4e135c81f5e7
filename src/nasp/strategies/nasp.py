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

Options (``--strategy-options``): ``init`` and ``init_noise``, the starting A = init +
init_noise · U(-1, 1), seeded (the release used 0.5 exactly, which hands every first argmax to
op 0; the noise makes the first architecture position-free).

Under a latency budget (``--latency-target``, ``nasp.strategies.budget``) step 1 and 3 become
Ā = prox_{C_T}(A), the nearest architecture within budget, once the warm-up is over
(``budget_warmup``, a fraction of the epochs, default 0.5); ``budget_none`` ("neutral", the
default, or "a") says what ``none`` weighs in that projection (``budget_values``), and
``budget_dual`` (default false) also adapts λ by dual ascent, as DARTS and ASAP do - measured
worse for NASP (see ``budget``'s doc).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, ClassVar

import torch

from nasp.strategies.arch_params import ArchParams
from nasp.strategies.base import ArchContext, Strategy, StrategySetup, arch_grad, register
from nasp.strategies.discretize import discretize, one_hot, tie_priority, to_record
from nasp.supernet.weighting import CellWeighting, Weighting, selection_plan


def init_continuous(setup: StrategySetup, init: float, noise: float) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(setup.seed + 7919)
    return {name: (init + noise * (2 * torch.rand(c.num_edges, c.num_ops, generator=g) - 1))
            .clamp_(0, 1) for name, c in setup.space.cells.items()}


@contextmanager
def held_constant(weights: Sequence[torch.Tensor]) -> Iterator[None]:
    """The weights without ``requires_grad`` for the architecture gradient. ``autograd.grad``
    asked for Ā alone skips weight gradients anyway; a compiled op's backward (AOTAutograd)
    cannot skip them at run time and computes the gradient of every input that required one
    when it was traced, so it must see weights that do not. The same numbers either way."""
    held = [p for p in weights if p.requires_grad]
    for p in held:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in held:
            p.requires_grad_(True)


@register("nasp")
class NASP(Strategy):
    """Continuous A in [0,1], discrete Ā for every forward pass."""

    options: ClassVar[dict[str, Any]] = {"init": 0.5, "init_noise": 1e-3, "budget_dual": False,
                                         "budget_none": "neutral", "budget_warmup": 0.5}
    network = "the discrete network under Ā (weights shared with the supernet)"
    checkpointed = ("arch",)
    takes_budget = True

    def __init__(self, setup: StrategySetup, **options: Any) -> None:
        super().__init__(setup, **options)
        warmup = self.opts["budget_warmup"]
        if isinstance(warmup, bool) or not isinstance(warmup, int | float) or \
                not 0 <= warmup < 1:
            from nasp.errors import NaspError

            raise NaspError(f"invalid budget_warmup {warmup!r}",
                            "a fraction of the epochs in [0, 1), e.g. 0.5")
        if self.opts["budget_none"] not in ("neutral", "a"):
            from nasp.errors import NaspError

            raise NaspError(f"invalid budget_none {self.opts['budget_none']!r}",
                            'use --strategy-options \'{"budget_none": "neutral"}\' or "a"')
        self.arch = ArchParams(init_continuous(setup, self.opts["init"], self.opts["init_noise"]),
                               setup, self.opts.get("step", "adam"))  # PA: its own step
        self.priority = tie_priority(self.cells, setup.seed)
        self.epoch = 0
        self.project()
        self.restored()

    def budget_binds(self) -> bool:
        """Whether the held architecture is projected into the budget this epoch: after the
        warm-up (``budget_warmup``, a fraction of the epochs, default half). A single-path
        search trains only the ops it holds, so an op the budget keeps out from the first
        step never gets trained weights, and its probed gradient - the only evidence A gets
        about it - stays noise; A would then rank ops at random. During the warm-up every op
        the unconstrained Ā picks is trained as in a search without budget, A learns what
        the ops are worth, and the projection afterwards chooses by that."""
        return self.arch.budget is not None and \
            self.epoch >= self.opts["budget_warmup"] * self.setup.epochs

    def start_epoch(self, epoch: int) -> None:
        binds = self.budget_binds()
        self.epoch = epoch
        if self.budget_binds() != binds:
            self.restored()

    def restored(self) -> None:
        """Ā and the host-side selection are derived from A: recomputed whenever A changes.
        With a latency budget Ā = prox_{C_T}(A), the nearest architecture within budget
        (``nasp.strategies.budget``); ``free_selection`` is prox_C(A), without the budget."""
        self.A_bar, self.selection = {}, {}
        for name, cell in self.cells.items():
            self.A_bar[name], self.selection[name] = discretize(self.arch[name], cell,
                                                                self.priority[name])
        self.free_selection = dict(self.selection)
        self.A_free = self.A_bar
        if self.budget_binds():
            self.selection = self.arch.within_budget(self.budget_values(), self.free_selection,
                                                     self.priority)
            self.A_bar = {name: one_hot(self.selection[name], cell.num_ops, self.arch[name])
                          for name, cell in self.cells.items()}

    def weighting(self) -> Weighting:
        return {name: CellWeighting(None, selection_plan(self.selection[name], cell.num_ops))
                for name, cell in self.cells.items()}

    def arch_weighting(self, A_bar: dict[str, torch.Tensor]) -> Weighting:
        """Ā as the weights; the selected ops RUN, every other (edge, op) - pruned edges
        included, so they can win back their place - is PROBEd."""
        return {name: CellWeighting(A_bar[name], selection_plan(self.selection[name],
                                                                cell.num_ops, probe=True))
                for name, cell in self.cells.items()}

    def arch_gradient(self, ctx: ArchContext, val_batch: Any) -> list[torch.Tensor]:
        """∇_Ā (L_val(w, Ā) + R(Ā)) with Ā as a leaf: no weight gradient is computed, and the
        weights are held constant meanwhile (``held_constant``)."""
        A_bar = {name: b.clone().requires_grad_(True) for name, b in self.A_bar.items()}
        with held_constant(ctx.weights):
            loss = ctx.loss(val_batch, self.arch_weighting(A_bar))
            if self.arch.budget is not None:
                # the penalty's pull is on the ops the budget excludes: charged at prox_C(A)
                grads = arch_grad(loss, list(A_bar.values()))
                extra = self.arch.penalty_gradient(self.A_free)
                return grads if extra is None else [g + x for g, x in zip(grads, extra)]
            penalty = self.arch.penalty(A_bar)
            return arch_grad(loss if penalty is None else loss + penalty, list(A_bar.values()))

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        grads = self.arch_gradient(ctx, val_batch)
        ctx.reduce(grads)
        self.arch.step(grads)
        self.project()
        self.restored()
        # with a budget: its unprojected latency, for the record (λ stays: the projection acts)
        self.arch.observe(self.free_selection, dual=bool(self.opts["budget_dual"]))

    def budget_values(self) -> dict[str, torch.Tensor]:
        """What the budget's projection weighs ops by: A, except that ``none`` (where it is a
        real choice, NAS-Bench-201) counts as the starting value. Its output is zero, so its
        validation gradient is exactly 0 and its A moves by weight decay alone - which Adam
        normalises into full-size steps, driving A[none] to 0 at the learning rate whatever
        the data say. Left as is, a budget would fill edges with any cheap op rather than
        remove them; at the starting value, an op is kept where the evidence of the search
        raised it above where it started (``budget_none: "a"`` keeps A itself)."""
        values = {name: a.detach().clone() for name, a in self.arch.items()}
        if self.opts["budget_none"] == "neutral":
            for name, cell in self.cells.items():
                for k in cell.final_ops:
                    if cell.ops[k] == "none":
                        values[name][:, k] = self.opts["init"]
        return values

    def project(self) -> None:
        """The proximal step's box constraint: A stays in [0, 1]."""
        with torch.no_grad():
            for _, a in self.arch.items():
                a.clamp_(0.0, 1.0)

    def genotype(self) -> Any:
        if self.arch.budget is not None and not self.budget_binds():  # still warming up
            return to_record(self.arch.within_budget(
                self.budget_values(), self.free_selection, self.priority), self.space)
        return to_record(self.selection, self.space)

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {"A": self.arch[name], "A_bar": self.A_bar[name]} for name in self.cells}
