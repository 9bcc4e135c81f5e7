"""The two plain proximal-algorithm baselines of the NASP paper (§3.2, §4.5).

Both take NASP's lean architecture gradient - ∇ of the validation loss with respect to the
discrete Ā, unselected ops probed without a graph, no second-order term - and differ from
NASP only in what they keep between steps:

* ``pa`` (standard proximal step, eq. 9): A itself lives in the discrete set C,
  A ← prox_C(A − η ∇_A L_val(w, A)). The step is a plain gradient step with η = ``arch_lr``
  (``step: "sgd"``, the default), because eq. 9 is a Euclidean proximal step; ``step: "adam"``
  uses Adam with the run's betas and weight decay instead. Either way the argmax of a one-hot
  row moves only if one step changes an entry by about 1 (plain step: η·|g_k − g_sel| > 1;
  Adam: never for lr ≪ 1, its step is bounded by a few times lr), so PA mostly keeps its
  seeded initial architecture and only trains its weights - the paper's point about PA.
* ``pa-lazy`` (lazy proximal step, eq. 10): A is continuous and is *not* clipped to [0, 1];
  Ā = prox_C(A) drives every forward pass and the gradient taken at Ā updates A. The step is
  Adam (``step: "adam"``, the default), exactly NASP's step without the box, so the two runs
  differ in the clipping alone.

Options (``--strategy-options``): ``step`` ("sgd" or "adam"), ``init`` and ``init_noise`` (the
starting A, as NASP's).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nasp.strategies.base import register
from nasp.strategies.discretize import discretize
from nasp.strategies.nasp import NASP


@register("pa")
class PA(NASP):
    """Standard proximal step: A ∈ C at all times (one-hot rows of kept edges, zero rows)."""

    options: ClassVar[dict[str, Any]] = {**NASP.options, "step": "sgd"}

    def project(self) -> None:
        """prox_C: A becomes the discretization of the updated values (eq. 9)."""
        with torch.no_grad():
            for name, a in self.arch.items():
                a.copy_(discretize(a, self.cells[name], self.priority[name])[0])


@register("pa-lazy")
class PALazy(NASP):
    """Lazy proximal step: continuous, unclipped A; Ā = prox_C(A) for every forward pass."""

    options: ClassVar[dict[str, Any]] = {**NASP.options, "step": "adam"}

    def project(self) -> None:
        """No projection at all: A may leave [0, 1] (eq. 10); only Ā is discrete."""
