"""The strategy interface: a strategy owns the architecture parameters.

It turns them into the weighting the supernet runs in the weight step (``weighting``), makes
its own architecture update from a validation batch (``arch_step``), and names the final
discrete architecture (``genotype``). It never sees data code or the loop: everything it needs
comes through an ``ArchContext``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.registry import Registry
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.supernet.weighting import Weighting

LossFn = Callable[[Any, Weighting], torch.Tensor]


@dataclass
class ArchContext:
    """What an architecture step may use besides its batches.

    ``loss(batch, weighting)`` is the task's loss; ``weights`` the network's trainable
    parameters and ``optimizer`` their optimizer (its lr, momentum buffers and weight decay give
    DARTS's unrolled step); ``buffers`` are saved and restored around look-ahead passes."""

    loss: LossFn
    weights: list[nn.Parameter]
    optimizer: torch.optim.Optimizer
    buffers: list[torch.Tensor]


class Strategy:
    """Base class; subclasses register themselves in ``STRATEGIES``."""

    name = "base"

    def __init__(self, space: SearchSpace, device: torch.device, **options: Any) -> None:
        self.space = space
        self.device = torch.device(device)
        self.cells: dict[str, CellSpec] = dict(space.cells)

    # --- the three things the loop asks for -------------------------------------------------
    def weighting(self) -> Weighting:
        """The weighting of the weight step."""
        raise NotImplementedError

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        """One update of the architecture parameters."""
        raise NotImplementedError

    def genotype(self) -> Genotype:
        """The discrete architecture this strategy currently stands for."""
        raise NotImplementedError

    # --- optional hooks ---------------------------------------------------------------------
    def eval_weighting(self) -> Weighting:
        """The weighting used to measure validation accuracy during the search."""
        return self.weighting()

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before each epoch (schedules, annealing)."""

    def end_epoch(self, epoch: int, epochs: int, metrics: dict[str, Any]) -> None:
        """Called after each epoch with its record (validation metrics of ``eval_weighting``)."""

    def finished(self) -> bool:
        """True when the strategy has converged and the loop may stop early (ASAP)."""
        return False

    def weights_to_reset(self) -> bool:
        """True when the loop must re-initialise network weights (random search)."""
        return False

    def weight_schedule_epochs(self) -> int | None:
        """Length (epochs) of the weight learning-rate cosine the loop restarts whenever
        ``weights_to_reset()`` is True, so every random-search candidate trains on the same
        schedule; ``None`` keeps the run's one schedule."""
        return None

    # --- records ----------------------------------------------------------------------------
    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        """Named (edges x ops) matrices per cell type, for arch.jsonl and plots."""
        raise NotImplementedError

    def parameters(self) -> Iterable[torch.Tensor]:
        return []

    def state_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    def load_state_dict(self, state: dict[str, Any]) -> None:
        raise NotImplementedError


STRATEGIES: Registry[type[Strategy]] = Registry("strategy", "--strategy")

# Options the loop hands every strategy (``build_strategy``); the rest come from
# ``strategy_options`` and are the strategy's own.
COMMON_OPTIONS = frozenset({"seed", "arch_lr", "arch_betas", "arch_weight_decay",
                            "lambda_params", "darts_order", "epochs"})


def check_options(strategy: str, given: Mapping[str, Any], known: Iterable[str]) -> None:
    """Reject option names a strategy does not know, naming the ones it does: a typo in
    ``--strategy-options`` must not silently fall back to a default."""
    known = set(known)
    unknown = sorted(set(given) - known - COMMON_OPTIONS)
    if unknown:
        hint = (f"valid --strategy-options for {strategy}: {', '.join(sorted(known))}" if known
                else f"strategy {strategy} takes no --strategy-options")
        raise NaspError(f"unknown option(s) for strategy {strategy!r}: {', '.join(unknown)}",
                        hint)


def get_strategy(name: str) -> type[Strategy]:
    return STRATEGIES.get(name)
