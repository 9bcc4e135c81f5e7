"""A user's own model as a search network: its space, calls under a weighting, and one
inspection pass that checks it and measures what its candidates cost.

The image task (``--space FILE.py:FUNCTION``) and the task of Python iterables
(``nasp.search(model=...)``) both hold one of these, so a user model runs, is checked and is
charged the same way whichever way its data comes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.spaces.model import ModelSpace
from nasp.supernet.choices import Inspection, attach
from nasp.supernet.weighting import Weighting

T = TypeVar("T")
COST_KINDS = ("params", "madds")  # measured by the inspection; latency comes from a table


class ModelNet:
    """``module`` (the user's model, trained in place) with its space; ``net(x, weighting)``
    runs ``module(x)`` with its choices under ``weighting``."""

    def __init__(self, module: nn.Module, task: str = "model") -> None:
        self.module = module
        self.space: ModelSpace = attach(module, task=task)
        self.inspection: Inspection | None = None

    def bound(self, weighting: Weighting):  # noqa: ANN201 - a context manager
        return self.space.state.bound(weighting)

    def __call__(self, x: Any, weighting: Weighting) -> Any:
        with self.bound(weighting):
            return self.module(x)

    def inspect(self, run: Callable[[], T]) -> T:
        """``run()`` once with every candidate of every choice running, in eval mode and
        without a graph (no weight, buffer or random state changes): a candidate whose output
        shape differs from its siblings', a wrong input list or a choice that never runs is a
        ``NaspError`` before any step; parameters and mult-adds per candidate are kept for the
        cost regularizer."""
        was_training = self.module.training
        self.module.eval()
        try:
            with torch.no_grad(), self.space.state.inspecting() as found:
                out = run()
        finally:
            self.module.train(was_training)
        silent = [label for label in self.space.cells if label not in found.calls]
        if silent:
            raise NaspError(f"choice(s) {', '.join(map(repr, silent))} did not run in a forward "
                            "pass of the model", "call every Choice / InputChoice in forward, "
                            "or remove the ones it does not use")
        self.inspection = found
        return out

    def raw_costs(self, kind: str) -> dict[str, torch.Tensor]:
        """Per label, the (edges, ops) matrix of what each candidate costs (``params`` or
        ``madds`` per sample, summed over the modules sharing the label, as the inspection
        measured them; latency comes from a cost table, ``nasp.costs.own_costs``); inputs
        cost 0."""
        if kind not in COST_KINDS:
            raise NaspError(f"--cost {kind} of a user model needs a cost table",
                            "measure one with `nasp profile --space FILE.py:FUNCTION`, or use "
                            "--cost params or madds")
        if self.inspection is None:
            raise RuntimeError("inspect the model before asking for its costs")
        measured = self.inspection.params if kind == "params" else self.inspection.madds
        out = {}
        for label, cell in self.space.cells.items():
            row = torch.tensor(measured[label], dtype=torch.float64)
            out[label] = row.expand(cell.num_edges, cell.num_ops).clone() \
                if self.space.kinds[label] == "Choice" else torch.zeros(cell.num_edges,
                                                                        cell.num_ops,
                                                                        dtype=torch.float64)
        return out
