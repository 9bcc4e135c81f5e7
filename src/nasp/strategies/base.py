"""The strategy interface: a strategy owns the architecture.

It turns its architecture state into the weighting the supernet runs in the weight step
(``weighting``), makes its own architecture update from a validation batch (``arch_step``),
and names the final discrete architecture (``genotype``). It never sees data code or the loop:
everything it needs arrives in a ``StrategySetup`` (once, at construction) and an
``ArchContext`` (per step). Strategies are built by name with ``create_strategy``, before any
data is loaded, so a bad ``--strategy-options`` fails at once.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.registry import Registry
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.supernet.weighting import Weighting

LossFn = Callable[[Any, Weighting], torch.Tensor]


def _no_reduce(tensors: Sequence[torch.Tensor]) -> None:
    """One process: nothing to average."""


@dataclass
class ArchContext:
    """What an architecture step may use besides its batches.

    ``loss(batch, weighting)`` is the task's loss; ``weights`` the network's trainable
    parameters and ``optimizer`` their optimizer (its lr, momentum buffers and weight decay give
    DARTS's unrolled step). ``reduce`` averages gradient tensors in place across data-parallel
    processes: a strategy passes every gradient it is about to apply through it, so all ranks
    make the same update. Architecture steps never move batch-norm running statistics: the loop
    runs them with the statistics frozen (``nasp.supernet.freeze``)."""

    loss: LossFn
    weights: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    reduce: Callable[[Sequence[torch.Tensor]], None] = _no_reduce


@dataclass(frozen=True)
class StrategySetup:
    """What every strategy is built from: the space, the device, the seed, the budget in epochs,
    the architecture optimizer's settings and the cost regularizer (normalised (edges, ops)
    costs per cell type, ``nasp.strategies.regularizer``; λ = 0 turns it off)."""

    space: SearchSpace
    device: torch.device = torch.device("cpu")
    seed: int = 0
    epochs: int = 50
    arch_lr: float = 3e-4
    arch_betas: tuple[float, float] = (0.5, 0.999)
    arch_weight_decay: float = 1e-3
    lambda_cost: float = 0.0
    costs: Mapping[str, torch.Tensor] = field(default_factory=dict)
    dtype: torch.dtype = torch.float32  # of the architecture tensors (float64 in gradient tests)
    # a latency budget (``nasp.strategies.budget``): λ then adapts itself, starting at
    # ``lambda_cost``, and the held architecture is projected into the budget
    budget: Any = None


class Strategy:
    """Base class; ``register`` gives a subclass its name and puts it in ``STRATEGIES``."""

    name: ClassVar[str] = "base"
    # its own --strategy-options with their defaults (None: derived, see the strategy's doc)
    options: ClassVar[dict[str, Any]] = {}
    # what the per-epoch validation metrics of a search with this strategy measure
    network: ClassVar[str] = "the search network"
    # attributes saved by state_dict: objects with state_dict(), tensors, plain values
    checkpointed: ClassVar[tuple[str, ...]] = ()
    # whether it honours a latency budget (``StrategySetup.budget``); others refuse one
    takes_budget: ClassVar[bool] = False

    def __init__(self, setup: StrategySetup, **options: Any) -> None:
        self.setup = setup
        self.space = setup.space
        self.device = torch.device(setup.device)
        self.cells: dict[str, CellSpec] = dict(setup.space.cells)
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            hint = (f"valid --strategy-options for {self.name}: {', '.join(sorted(self.options))}"
                    if self.options else f"strategy {self.name} takes no --strategy-options")
            raise NaspError(f"unknown option(s) for strategy {self.name!r}: "
                            f"{', '.join(unknown)}", hint)
        self.opts = {**self.options, **{k: v for k, v in options.items() if v is not None}}
        if setup.budget is not None and not self.takes_budget:
            raise NaspError(f"strategy {self.name!r} does not search under a latency budget",
                            "use --strategy nasp, pa, pa-lazy, darts, darts2 or asap with "
                            "--latency-target, or leave the target out")

    # --- what the loop asks for -------------------------------------------------------------
    def weighting(self) -> Weighting:
        """The weighting of the weight step."""
        raise NotImplementedError

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        """One update of the architecture (no-op for strategies that do not learn one)."""

    def genotype(self) -> Any:
        """The discrete architecture this strategy currently stands for: a ``Genotype`` for the
        built-in spaces, a user model's arch (``nasp.spaces.model.ModelArch``) for its own."""
        raise NotImplementedError

    def eval_weighting(self) -> Weighting:
        """The weighting of the per-epoch validation metrics (see ``network``)."""
        return self.weighting()

    def start_epoch(self, epoch: int) -> int | None:
        """Called before each epoch. Returns ``None``, or a number of epochs when the network
        must start afresh now, with new weights and a new learning-rate cosine of that length
        (random search's candidates)."""
        return None

    def end_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        """Called after each epoch with its record (validation metrics of ``eval_weighting``);
        may add fields to it."""

    def finished(self) -> bool:
        """True when the strategy has converged and the loop may stop early (ASAP)."""
        return False

    def genotype_epoch(self) -> int | None:
        """The epoch whose validation metrics belong to ``genotype()``'s network, when one
        does (random search: its best candidate's last epoch); ``None``: the last epoch's,
        whatever network ``network`` names."""
        return None

    def budget_metrics(self) -> dict[str, Any]:
        """With a latency budget: the held architecture's predicted latency and λ, for the
        epoch record and result.json (``nasp.strategies.budget.report``); else nothing."""
        arch = getattr(self, "arch", None)
        budget = getattr(arch, "budget", None)
        if budget is None:
            return {}
        from nasp.strategies.budget import report
        from nasp.strategies.discretize import record_selection

        held = record_selection(self.genotype(), self.space)
        return {**report(budget.budget, budget.budget.model.predict_selection(held)),
                "latency_lambda": budget.lam, "latency_unprojected_ms": budget.free_ms}

    # --- records ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        """Named (edges x ops) matrices per cell type, for arch.jsonl and plots."""
        raise NotImplementedError

    def parameters(self) -> list[torch.Tensor]:
        """The continuous architecture tensors (for broadcasting and checksums)."""
        arch = getattr(self, "arch", None)
        return arch.parameters() if arch is not None else []

    def state_dict(self) -> dict[str, Any]:
        out = {}
        for key in self.checkpointed:
            value = getattr(self, key)
            if hasattr(value, "state_dict"):
                value = value.state_dict()
            elif isinstance(value, torch.Tensor):
                value = value.detach().clone()
            out[key] = value
        return out

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key in self.checkpointed:
            current = getattr(self, key)
            if hasattr(current, "load_state_dict"):
                current.load_state_dict(state[key])
            elif isinstance(current, torch.Tensor):
                current.copy_(state[key])
            else:
                setattr(self, key, state[key])
        self.restored()

    def restored(self) -> None:
        """Recompute derived state after ``load_state_dict``."""


def arch_grad(loss: torch.Tensor, leaves: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """∇ of ``loss`` with respect to architecture tensors, zeros for one the loss does not
    reach: in a user's model a choice may feed only inputs an ``InputChoice`` left out (a cell
    reaches all its edges, so the built-in spaces never meet this)."""
    grads = torch.autograd.grad(loss, list(leaves), allow_unused=True)
    return [torch.zeros_like(a) if g is None else g for a, g in zip(leaves, grads, strict=True)]


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "--strategy")


def register(name: str) -> Callable[[type[Strategy]], type[Strategy]]:
    """Class decorator: the registry entry names the strategy."""

    def deco(cls: type[Strategy]) -> type[Strategy]:
        cls.name = name
        STRATEGIES.register(name, cls)
        return cls

    return deco


def get_strategy(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)


def create_strategy(name: str, setup: StrategySetup,
                    options: Mapping[str, Any] | None = None) -> Strategy:
    """Build a strategy by name; unknown names and options fail here, before any data."""
    if options is not None and not isinstance(options, Mapping):
        raise NaspError("--strategy-options must be a JSON object",
                        'e.g. --strategy-options \'{"t0": 2.0}\'')
    return get_strategy(name)(setup, **dict(options or {}))
