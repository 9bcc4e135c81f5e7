"""A genotype held fixed: no architecture step, only the weights of its ops train.

``nasp compare`` scores every strategy's final architecture by training it from scratch with
this strategy on the search code (same supernet, seed and budget for all; evaluated on the
held-out test split), so differences in the table come from the architectures, not from how
each was evaluated.

Option (``--strategy-options``): ``genotype`` - a genotype dict (genotype.json's content), a
path to a genotype.json or a search run folder, or a published name (``DARTS_V2``, ...).
The network runs exactly the genotype's (op, input) pairs with unit weights; two pairs of a
node on the same input both run and are summed, as in the evaluation network.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch

from nasp.errors import NaspError
from nasp.strategies.base import Strategy, StrategySetup, register
from nasp.strategies.discretize import parse_record, record_edges
from nasp.supernet.weighting import RUN, SKIP, CellWeighting, Weighting

_HINT = ('pass --strategy-options \'{"genotype": ...}\' with a genotype dict, a genotype.json '
         "path, a search run folder or a published name (e.g. DARTS_V2); for your own model "
         '\'{"arch": ...}\' with an arch dict, an arch.json path or a search run folder')


@register("fixed")
class Fixed(Strategy):
    """Trains one given genotype; ``genotype()`` returns it unchanged."""

    # ``arch``: the same for a user model's architecture (a dict, arch.json or run folder)
    options: ClassVar[dict[str, Any]] = {"genotype": None, "arch": None}
    network = "the given genotype's network, trained from scratch"

    def __init__(self, setup: StrategySetup, **options: Any) -> None:
        super().__init__(setup, **options)
        given = [self.opts[k] for k in ("genotype", "arch") if self.opts[k] is not None]
        if len(given) != 1:
            raise NaspError("strategy fixed needs a genotype (or an arch)"
                            if not given else "strategy fixed takes genotype or arch, not both",
                            _HINT)
        self.fixed = parse_record(given[0], self.space)
        self.plans = {}
        for name, edges in record_edges(self.fixed, self.space).items():
            cell = self.cells[name]
            plan = [[SKIP] * cell.num_ops for _ in range(cell.num_edges)]
            for e, k in edges:
                plan[e][k] = RUN
            self.plans[name] = tuple(tuple(row) for row in plan)

    def weighting(self) -> Weighting:
        return {name: CellWeighting(None, plan) for name, plan in self.plans.items()}

    def genotype(self) -> Any:
        return self.fixed

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {"A_bar": torch.tensor(plan, dtype=torch.float32).eq(RUN).float()}
                for name, plan in self.plans.items()}
