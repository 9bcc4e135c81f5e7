"""A genotype held fixed: no architecture step, only the weights of its ops train.

``nasp compare`` scores every strategy's final architecture by training it from scratch with
this strategy on the search code (same supernet, data split, seed and budget for all), so
differences in the table come from the architectures, not from how each was evaluated.

Option (``--strategy-options``): ``genotype`` - a genotype dict (genotype.json's content), a
path to a genotype.json or a search run folder, or a published name (``DARTS_V2``, ...).
The network runs exactly the genotype's (op, input) pairs with unit weights; two pairs of a
node on the same input both run and are summed, as in the evaluation network.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from nasp.errors import NaspError
from nasp.genotype import Genotype, get_genotype
from nasp.spaces.base import CellSpec, SearchSpace
from nasp.strategies.base import STRATEGIES, ArchContext, Strategy, check_options
from nasp.supernet.weighting import RUN, SKIP, CellWeighting, Plan, Weighting

_HINT = ('pass --strategy-options \'{"genotype": ...}\' with a genotype dict, a genotype.json '
         "path, a search run folder or a published name (e.g. DARTS_V2)")


def resolve_genotype(value: Any, task: str) -> Genotype:
    """A ``Genotype`` from a dict, a path/run folder or a published name."""
    if isinstance(value, Genotype):
        value.validate()
        return value
    if isinstance(value, dict):
        return Genotype.from_dict(value, "strategy option 'genotype'")
    if isinstance(value, str | os.PathLike):
        return get_genotype(value, task)
    raise NaspError(f"strategy option 'genotype' has type {type(value).__name__}", _HINT)


def genotype_plan(genotype: Genotype, cells: dict[str, CellSpec]) -> dict[str, Plan]:
    """Per cell type, the plan that runs exactly the genotype's (op, input) pairs."""
    plans = {}
    for name, cell in cells.items():
        if name not in genotype.cells:
            raise NaspError(f"the genotype has no {name!r} cell (it has "
                            f"{', '.join(genotype.cells)})", "use a genotype of this task")
        pairs = list(genotype.cells[name])
        if len(pairs) != cell.nodes * cell.keep:
            raise NaspError(f"the genotype's {name!r} cell has {len(pairs)} edges, this space "
                            f"needs {cell.nodes * cell.keep}", "use a genotype of this space")
        if tuple(genotype.concat[name]) != cell.concat:
            raise NaspError(f"the genotype's {name!r} cell concatenates nodes "
                            f"{list(genotype.concat[name])}; the search network always uses "
                            f"{list(cell.concat)}", "train it with `nasp train` instead")
        plan = [[SKIP] * cell.num_ops for _ in range(cell.num_edges)]
        for i, node_edges in enumerate(cell.node_edges):
            for op, j in pairs[i * cell.keep:(i + 1) * cell.keep]:
                if op not in cell.ops:
                    raise NaspError(f"op {op!r} of the genotype is not in this space's {name} "
                                    f"cell", f"use a --space whose {name} cell has {op!r} "
                                    f"(it has {', '.join(cell.ops)})")
                if not 0 <= j < len(node_edges):
                    raise NaspError(f"node {i} of the genotype's {name!r} cell takes input {j}, "
                                    f"which does not exist there", "fix the genotype")
                plan[node_edges[j]][cell.ops.index(op)] = RUN
        plans[name] = tuple(tuple(row) for row in plan)
    return plans


@STRATEGIES.register("fixed")
class Fixed(Strategy):
    """Trains one given genotype; ``genotype()`` returns it unchanged."""

    name = "fixed"

    def __init__(self, space: SearchSpace, device: torch.device, *, genotype: Any = None,
                 **options: Any) -> None:
        super().__init__(space, device)
        check_options(self.name, options, ("genotype",))
        if genotype is None:
            raise NaspError("strategy fixed needs a genotype", _HINT)
        self.fixed = resolve_genotype(genotype, space.task)
        self.plans = genotype_plan(self.fixed, self.cells)

    def weighting(self) -> Weighting:
        return {name: CellWeighting(None, plan) for name, plan in self.plans.items()}

    def arch_step(self, ctx: ArchContext, train_batch: Any, val_batch: Any) -> None:
        """Nothing to learn: the architecture is given."""

    def genotype(self) -> Genotype:
        return self.fixed

    def snapshot(self) -> dict[str, dict[str, torch.Tensor]]:
        return {name: {"A_bar": torch.tensor(plan, dtype=torch.float32).eq(RUN).float()}
                for name, plan in self.plans.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"genotype": self.fixed.to_dict()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        saved = Genotype.from_dict(state["genotype"], "checkpoint")
        if saved.to_dict() != self.fixed.to_dict():
            raise NaspError("the checkpoint trained another genotype than the configured one",
                            "resume with the run folder's own config.json")
