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

from typing import Any

import torch

from nasp.errors import NaspError
from nasp.spaces.base import SearchSpace
from nasp.strategies.base import STRATEGIES, check_options
from nasp.strategies.discretize import discretize
from nasp.strategies.nasp import NASP

_OPTIONS = ("step", "init", "init_noise")
_STEPS = ("sgd", "adam")


def _arch_optimizer(
    params: list[torch.Tensor], step: str, lr: float, betas: tuple[float, float], wd: float,
    strategy: str,
) -> torch.optim.Optimizer:
    if step not in _STEPS:
        raise NaspError(f"unknown step {step!r} for strategy {strategy!r}",
                        'use --strategy-options \'{"step": "sgd"}\' or "adam"')
    if not lr > 0:
        raise NaspError(f"invalid arch_lr {lr!r} for strategy {strategy!r}",
                        "use a positive --arch-lr")
    if step == "sgd":
        return torch.optim.SGD(params, lr=lr)
    return torch.optim.Adam(params, lr=lr, betas=tuple(betas), weight_decay=wd)


@STRATEGIES.register("pa")
class PA(NASP):
    """Standard proximal step: A ∈ C at all times (one-hot rows of kept edges, zero rows)."""

    name = "pa"
    default_step = "sgd"

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
        step: str | None = None,
        init: float = 0.5,
        init_noise: float = 1e-3,
        **options: Any,
    ) -> None:
        check_options(self.name, options, _OPTIONS)
        super().__init__(space, device, seed=seed, arch_lr=arch_lr, arch_betas=arch_betas,
                         arch_weight_decay=arch_weight_decay, lambda_params=lambda_params,
                         init=init, init_noise=init_noise)
        self.step = step or self.default_step
        self.optimizer = _arch_optimizer(list(self.A.values()), self.step, arch_lr, arch_betas,
                                         arch_weight_decay, self.name)
        self.project()
        self._refresh()

    def project(self) -> None:
        """prox_C: A becomes the discretization of the updated values (eq. 9)."""
        with torch.no_grad():
            for name, a in self.A.items():
                a.copy_(discretize(a, self.cells[name])[0])


@STRATEGIES.register("pa-lazy")
class PALazy(PA):
    """Lazy proximal step: continuous, unclipped A; Ā = prox_C(A) for every forward pass."""

    name = "pa-lazy"
    default_step = "adam"

    def project(self) -> None:
        """No projection at all: A may leave [0, 1] (eq. 10); only Ā is discrete."""
