"""The search task: what the search loop needs from a problem (images, language models).

The loop knows neither the strategy nor the data: a task owns the supernet, its batches and
its metrics; a strategy owns the architecture. This is the seam between them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Protocol

import torch
from torch import nn

from nasp.genotype import Genotype
from nasp.spaces.base import SearchSpace
from nasp.supernet.weighting import Weighting


class SearchTask(Protocol):
    space: SearchSpace
    model: nn.Module            # the supernet; its parameters are the network weights
    device: torch.device

    def steps_per_epoch(self) -> int:
        """Iterations (architecture step + weight step) per epoch."""

    def batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        """(train batch, validation batch) pairs; the order depends only on (seed, epoch)."""

    def loss(self, batch: Any, weighting: Weighting) -> torch.Tensor:
        """The scalar loss of one batch under a weighting (used by strategies)."""

    def train_loss(
        self, batch: Any, weighting: Weighting
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The weight step's loss plus device-side metric sums (no host sync), e.g.
        {"loss_sum": ..., "correct": ..., "count": ...}; summed over an epoch by the loop."""

    def summarize(self, sums: dict[str, float], prefix: str) -> dict[str, float]:
        """Turn summed metrics into the epoch record's fields, e.g. train_loss, train_acc."""

    def evaluate(self, weighting: Weighting) -> dict[str, float]:
        """Held-out metrics in eval mode: ``valid_loss``, ``valid_acc`` or ``valid_ppl`` on the
        architecture split, ``test_*`` on the test split (``evaluate_on``)."""

    def genotype_metrics(self, genotype: Genotype) -> dict[str, float]:
        """Known facts about a genotype itself (NAS-Bench-201's ground truth), per epoch."""

    def eval_params_m(self, genotype: Genotype) -> float:
        """Parameters (M) of the genotype's evaluation network at the paper's size."""

    def state_dict(self) -> dict[str, Any]:
        """Task state that a resume must restore beyond the model (e.g. hidden states)."""

    def load_state_dict(self, state: dict[str, Any]) -> None: ...
