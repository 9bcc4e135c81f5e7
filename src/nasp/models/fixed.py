"""A user model with one architecture fixed: every ``Choice`` replaced by its chosen candidate
(the same module, with the weights the search trained), every ``InputChoice`` by a fixed
selection. What comes out is the network the search ran under that architecture, operation for
operation, so its output equals the search network's bit for bit; NASP trained exactly this
network (the weight step runs only the chosen candidates), so nothing has to move over.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nasp.supernet.choices import Choice, ChoiceModule, InputChoice, attach


class SelectInputs(nn.Module):
    """The fixed form of an ``InputChoice``: the sum (mean, or concatenation along dim 1) of the
    inputs at ``indices``, in input order. No parameters, no architecture state."""

    def __init__(self, indices: Sequence[int], reduction: str = "sum") -> None:
        super().__init__()
        self.indices = tuple(int(i) for i in indices)
        self.reduction = reduction

    def extra_repr(self) -> str:
        return f"indices={list(self.indices)}, reduction={self.reduction!r}"

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        chosen = [inputs[i] for i in self.indices]
        if self.reduction == "concat":
            return torch.cat(chosen, dim=1)
        total = chosen[0]
        for y in chosen[1:]:
            total = total + y
        return total / len(chosen) if self.reduction == "mean" else total


def _replace(root: nn.Module, qualified: str, new: nn.Module) -> nn.Module:
    """Put ``new`` where ``qualified`` is; a choice at the root is replaced by returning
    ``new`` itself."""
    if not qualified:
        return new
    parent_name, _, attr = qualified.rpartition(".")
    parent = root.get_submodule(parent_name) if parent_name else root
    setattr(parent, attr, new)
    return root


def fix(model: nn.Module, arch: Mapping[str, Any], fresh: bool = False) -> nn.Module:
    """A copy of ``model`` with ``arch`` fixed: a plain ``nn.Module`` holding no ``Choice`` or
    ``InputChoice`` (the search model is left as it was). ``arch`` is a dict label -> candidate
    name / input indices (a search result's ``.arch``, or a run's arch.json); a missing, unknown
    or extra label or an unknown candidate is a ``NaspError``. ``fresh=True`` re-initialises
    every weight (the same architecture, for training from scratch; seeded by torch's global
    generator)."""
    space = attach(model)
    arch = space.parse_record(arch)
    fixed = copy.deepcopy(model)
    while True:  # outermost first; choices inside chosen candidates come next round
        found = [(name, m) for name, m in fixed.named_modules(remove_duplicate=False)
                 if isinstance(m, ChoiceModule)]
        if not found:
            break
        name, m = found[0]
        label = m.__dict__["_key"]
        if isinstance(m, Choice):
            new: nn.Module = m.candidates[arch[label]]
        else:
            assert isinstance(m, InputChoice)
            new = SelectInputs(arch[label], m.reduction)
        fixed = _replace(fixed, name, new)
    if fresh:
        for m in fixed.modules():
            if hasattr(m, "reset_parameters"):
                m.reset_parameters()
    return fixed


def params_m(model: nn.Module) -> float:
    """Parameters of a network, in millions."""
    return sum(p.numel() for p in model.parameters()) / 1e6
