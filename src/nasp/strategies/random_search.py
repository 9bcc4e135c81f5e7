"""Random search: sample discrete architectures, train each briefly, keep the best.

Candidates are drawn uniformly from the discrete space, seeded: per intermediate node its kept
number of distinct incoming edges chosen uniformly, and per chosen edge one of the cell's final
ops (``CellSpec.final_ops``) chosen uniformly. Each candidate trains on the same supernet code as
every other strategy, running only its own ops (a discrete weighting), from freshly initialised
weights and a fresh learning-rate cosine over its epochs (``start_epoch``), so candidates are
trained alike. The loop measures each epoch's validation metrics of the candidate (on the
architecture split); the candidate with the best accuracy at the end of its training (lowest
perplexity for language models, lowest validation loss for a user's own model) is the result,
and its metrics are the ones result.json reports beside the genotype (``genotype_epoch``).

Budget (``--strategy-options``): ``epochs_per_candidate`` (default max(1, epochs // 5)) and
``candidates`` (default epochs // epochs_per_candidate), so the candidates together use the
run's epochs - the same budget as the other strategies - up to a remainder smaller than one
candidate (quick preset, 10 epochs: 5 candidates x 2 epochs; paper preset, 50: 5 x 10). The
search stops (``finished``) when the last candidate is trained. Giving one of the two options
derives the other; giving both must fit in ``--epochs``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch

from nasp.errors import NaspError
from nasp.spaces.base import CellSpec
from nasp.strategies.base import Strategy, StrategySetup, register
from nasp.strategies.discretize import Selection, one_hot, to_record
from nasp.supernet.weighting import CellWeighting, Weighting, selection_plan

Architecture = dict[str, Selection]


def sample_architecture(cells: Mapping[str, CellSpec], rng: np.random.Generator) -> Architecture:
    """One architecture drawn uniformly: the kept number of distinct inputs per node, one final
    op per kept input."""
    out = {}
    for name, cell in cells.items():
        ops = cell.final_ops
        sel = [-1] * cell.num_edges
        for i, node_edges in enumerate(cell.node_edges):
            for j in rng.choice(len(node_edges), size=cell.kept(i), replace=False):
                sel[node_edges[int(j)]] = ops[int(rng.integers(len(ops)))]
        out[name] = tuple(sel)
    return out


def _count(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise NaspError(f"invalid random-search option {name}={value!r}",
                        f"{name} must be a whole number >= 1 (--strategy-options)")
    return value


def budget(epochs: int, candidates: int | None, epochs_per_candidate: int | None
           ) -> tuple[int, int]:
    """(candidates, epochs per candidate) that fit in ``epochs`` (see the module docstring)."""
    epochs = max(int(epochs), 1)
    if candidates is None and epochs_per_candidate is None:
        epochs_per_candidate = max(1, epochs // 5)
    if candidates is None:
        candidates = epochs // epochs_per_candidate  # type: ignore[operator]
    elif epochs_per_candidate is None:
        epochs_per_candidate = epochs // candidates
    if candidates < 1 or epochs_per_candidate < 1 or candidates * epochs_per_candidate > epochs:
        raise NaspError(
            f"random search with {candidates} candidate(s) x {epochs_per_candidate} epoch(s) "
            f"does not fit in {epochs} epoch(s)",
            "raise --epochs or lower candidates / epochs_per_candidate in --strategy-options")
    return candidates, epochs_per_candidate


@register("random")
class RandomSearch(Strategy):
    """Uniformly sampled candidates trained in turn; the best by validation metric wins."""

    options: ClassVar[dict[str, Any]] = {"candidates": None, "epochs_per_candidate": None}
    network = "the current candidate's network, trained from scratch for its epochs"
    checkpointed = ("scores", "current")

    def __init__(self, setup: StrategySetup, **options: Any) -> None:
        super().__init__(setup, **options)
        self.num_candidates, self.epochs_per_candidate = budget(
            setup.epochs, _count("candidates", self.opts["candidates"]),
            _count("epochs_per_candidate", self.opts["epochs_per_candidate"]))
        rng = np.random.default_rng([int(setup.seed), 0x5EED])
        self.candidates = [sample_architecture(self.cells, rng)
                           for _ in range(self.num_candidates)]
        self.scores: dict[int, float] = {}  # candidate -> validation metric at its last epoch
        self.current = 0

    def start_epoch(self, epoch: int) -> int | None:
        """Every candidate, the first included, starts on freshly drawn weights and a fresh
        learning-rate cosine over its own epochs."""
        self.current = min(epoch // self.epochs_per_candidate, self.num_candidates - 1)
        return self.epochs_per_candidate if epoch % self.epochs_per_candidate == 0 else None

    def end_epoch(self, epoch: int, metrics: dict[str, Any]) -> None:
        metrics["candidate"] = self.current
        if (epoch + 1) % self.epochs_per_candidate == 0:
            if "valid_acc" in metrics:
                self.scores[self.current] = float(metrics["valid_acc"])
            elif "valid_ppl" in metrics:
                self.scores[self.current] = -float(metrics["valid_ppl"])
            elif "valid_loss" in metrics:  # a user model's own loss: lower is better
                self.scores[self.current] = -float(metrics["valid_loss"])

    def finished(self) -> bool:
        return len(self.scores) >= self.num_candidates

    def weighting(self) -> Weighting:
        arch = self.candidates[self.current]
        return {name: CellWeighting(None, selection_plan(arch[name], cell.num_ops))
                for name, cell in self.cells.items()}

    def best(self) -> int:
        """The best scored candidate (ties: the earlier), or the current one before any."""
        if not self.scores:
            return self.current
        return max(sorted(self.scores), key=lambda c: self.scores[c])

    def genotype(self) -> Any:
        return to_record(self.candidates[self.best()], self.space)

    def genotype_epoch(self) -> int | None:
        """The last epoch of the best candidate: its metrics are the genotype's."""
        if not self.scores:
            return None
        return (self.best() + 1) * self.epochs_per_candidate - 1

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        arch = self.candidates[self.current]
        return {name: {"A_bar": one_hot(arch[name], cell.num_ops, torch.zeros(()))}
                for name, cell in self.cells.items()}
