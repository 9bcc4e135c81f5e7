"""Choices inside a user's own network: ``Choice`` (one of several candidate modules) and
``InputChoice`` (k of n input tensors), run by whatever weighting a strategy hands out.

They are the cells' mechanism with another shape, not a second one (``nasp.spaces.model``
turns a model's choices into cell specs):

* a ``Choice`` is one edge of a one-node cell whose ops are its candidates: it runs the
  candidates its row of the weighting RUNs (the weighted sum of a mixed edge, ``mixed.mix``),
  and attaches the architecture gradient of the ones it PROBEs with ``probe.probe_node``: each
  probed candidate runs once, without a graph, inside backward, and turns into
  ⟨∂L/∂out, candidate(x)⟩; no backward pass ever goes through it;
* an ``InputChoice`` is one node with n incoming edges whose ops are ``pass`` and ``none``
  (``none`` gives DARTS-style mixtures an "off" weight per input; it never wins), keeping k of
  them: the keep-k rule that picks a cell node's two strongest edges picks its inputs.

The weighting reaches a choice through its model's ``ChoiceState`` (set for the duration of a
call by the search task; never a global), so a choice's ``forward`` takes exactly what its
candidates take and the user's ``forward`` needs no extra argument. Outside a search a model
with choices runs only under an architecture (``use``; or ``nasp.fix`` for a plain network).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from nasp.compiled import compiler_of
from nasp.errors import NaspError
from nasp.ops import Identity
from nasp.spaces.base import CellSpec
from nasp.spaces.model import INPUT_OPS, MODEL_FAMILY, ModelSpace
from nasp.supernet.inplace import fresh_in_place
from nasp.supernet.mixed import mix
from nasp.supernet.probe import ProbeInput, probe_node
from nasp.supernet.weighting import PROBE, RUN, SKIP, CellWeighting, Weighting

REDUCTIONS = ("sum", "mean", "concat")
_IDENTITY = Identity()  # a probed input of an InputChoice: ⟨∂L/∂out, x_j⟩


@dataclass
class Inspection:
    """What one forward pass with every candidate running found, per label: the candidates'
    output shapes (checked to agree), parameters and mult-adds per sample (summed over the
    modules that share the label), and each call of a Choice with its arguments (``inputs``:
    (choice, args, kwargs), what a latency table times its candidates on)."""

    calls: dict[str, int] = field(default_factory=dict)
    seen: set[int] = field(default_factory=set)  # Choice modules counted (a module run twice
    params: dict[str, list[float]] = field(default_factory=dict)  # has its weights once)
    madds: dict[str, list[float]] = field(default_factory=dict)
    inputs: dict[str, list[Any]] = field(default_factory=dict)


class ChoiceState:
    """The weighting a model's choices run for the current call (one object per model)."""

    __slots__ = ("weighting", "inspection")

    def __init__(self) -> None:
        self.weighting: Weighting | None = None
        self.inspection: Inspection | None = None

    @contextmanager
    def bound(self, weighting: Weighting) -> Iterator[None]:
        """Run the model's choices under ``weighting`` inside the block (re-entrant)."""
        saved = self.weighting
        self.weighting = weighting
        try:
            yield
        finally:
            self.weighting = saved

    @contextmanager
    def inspecting(self) -> Iterator[Inspection]:
        """Every candidate runs (no graph): shapes are checked and costs measured."""
        saved, self.inspection = self.inspection, Inspection()
        try:
            yield self.inspection
        finally:
            self.inspection = saved


class ChoiceModule(nn.Module):
    """What both choices share: a label, and the state their model binds them to."""

    def __init__(self, label: str | None) -> None:
        super().__init__()
        if label is not None and (not isinstance(label, str) or not label):
            raise NaspError(f"{type(self).__name__} label {label!r} is not a non-empty string",
                            "pass label='name', or leave it out to use the module's name")
        self.label = label
        # set by nasp.spaces.model when the model's space is built: plain attributes, not
        # modules or buffers, so they never reach a state dict
        self.__dict__["_state"] = None
        self.__dict__["_key"] = label

    def _weighting(self) -> CellWeighting | None:
        """This choice's row of the bound weighting; ``None`` while inspecting."""
        state = self.__dict__.get("_state")
        if state is not None and state.inspection is not None:
            return None
        if state is None or state.weighting is None:
            raise NaspError(
                f"{type(self).__name__} {self._key or '(unlabelled)'!r} ran outside a search, "
                "with no architecture to run",
                "search it with nasp.search(model=...), or run one architecture: "
                "nasp.fix(model, arch) (a plain network) or `with nasp.choices.use(model, "
                "arch): model(x)`")
        return state.weighting[self._key]


def _shapes(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return tuple(value.shape)
    return type(value).__name__


class _Call:
    """A probed candidate called with its own arguments (several, or keyword ones), under the
    weighting of the forward pass (nested choices inside it run as they did there)."""

    __slots__ = ("module", "state", "weighting")

    def __init__(self, module: nn.Module, state: ChoiceState, weighting: Weighting) -> None:
        self.module, self.state, self.weighting = module, state, weighting

    def probe(self, inp: _CallInput, grad: Any) -> torch.Tensor:
        with self.state.bound(self.weighting), fresh_in_place(self.module):
            y = self.module(*inp.args, **inp.kwargs)
        return grad.dot(y)


class _CallInput(ProbeInput):
    """The arguments of a probed call, detached; every tensor among them is checked for
    in-place changes between forward and backward."""

    __slots__ = ("args", "kwargs", "_tensors")

    def __init__(self, args: tuple, kwargs: dict[str, Any]) -> None:
        def detach(v: Any) -> Any:
            return v.detach() if isinstance(v, torch.Tensor) else v

        self.args = tuple(detach(a) for a in args)
        self.kwargs = {k: detach(v) for k, v in kwargs.items()}
        tensors = [v for v in (*args, *kwargs.values()) if isinstance(v, torch.Tensor)]
        self._tensors = [(t, t._version) for t in tensors]
        first = tensors[0] if tensors else torch.zeros(())
        super().__init__(first)

    def changed(self) -> bool:
        return any(t._version != v for t, v in self._tensors)


class Choice(ChoiceModule):
    """One of several candidate modules, chosen by the search.

    ``candidates``: a dict name -> module, or a list of modules (named "0", "1", ...). The
    forward pass takes what a candidate takes and returns one tensor: the chosen candidate's
    output in a discrete architecture, a weighted sum of candidates in a mixture (DARTS).
    Choices with one ``label`` share one decision (their candidate names must match); the
    label defaults to the module's qualified name in the model."""

    def __init__(self, candidates: Mapping[str, nn.Module] | Sequence[nn.Module],
                 label: str | None = None) -> None:
        super().__init__(label)
        if isinstance(candidates, Mapping):
            items = list(candidates.items())
        elif isinstance(candidates, Sequence | nn.ModuleList) and not isinstance(candidates,
                                                                                str):
            items = [(str(i), m) for i, m in enumerate(candidates)]
        else:
            raise NaspError(f"Choice candidates must be a dict name -> module or a list of "
                            f"modules, not {type(candidates).__name__}",
                            "e.g. nasp.Choice({'k3': conv3, 'k5': conv5})")
        if not items:
            raise NaspError("a Choice needs at least one candidate", "pass its candidates")
        for name, module in items:
            if not isinstance(name, str) or not name or "." in name:
                raise NaspError(f"Choice candidate name {name!r} is not a non-empty string "
                                "without dots", "rename it (names key the modules' weights)")
            if not isinstance(module, nn.Module):
                raise NaspError(f"Choice candidate {name!r} is a {type(module).__name__}, "
                                "not a torch.nn.Module", "wrap functions in a module")
        self.candidates = nn.ModuleDict(items)
        self.names = tuple(name for name, _ in items)
        self.zero = tuple(bool(getattr(m, "is_zero", False)) for _, m in items)
        self.__dict__["_nested"] = True  # candidates hold choices; set when the space is built

    def forward(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        w = self._weighting()
        ops = tuple(self.candidates.values())
        if w is None:
            return self._inspect(ops, args, kwargs)
        weights = None if w.weights is None else w.weights[0]
        codes = w.plan[0]
        compiler = compiler_of(self) if torch.is_grad_enabled() else None
        if compiler is not None and len(args) == 1 and not kwargs and \
                isinstance(args[0], torch.Tensor) and not self.__dict__["_nested"]:
            out = mix(ops, self.zero, lambda m: compiler.forward(m, args[0]), weights, codes)
        else:  # eager (probed candidates run compiled through ``probe_op`` when attached)
            out = mix(ops, self.zero, lambda m: m(*args, **kwargs), weights, codes)
        if out is None:
            raise RuntimeError(f"the weighting runs no candidate of Choice {self._key!r}")
        if w.weights is not None and torch.is_grad_enabled() and PROBE in codes:
            out = probe_node(out, w.weights, self._probes(ops, codes, args, kwargs))
        return out

    def _probes(self, ops: Sequence[nn.Module], codes: Sequence[int], args: tuple,
                kwargs: dict[str, Any]) -> list:
        """(edge, op, op, input) for every probed candidate; they share one input (and what
        nasp's own ops share on it, e.g. a leading ReLU)."""
        state = self.__dict__["_state"]
        plain = (len(args) == 1 and not kwargs and isinstance(args[0], torch.Tensor)
                 and not self.__dict__["_nested"])
        inp = ProbeInput(args[0]) if plain else _CallInput(args, kwargs)
        probes = []
        for k, code in enumerate(codes):
            if code == PROBE and not self.zero[k]:
                op = ops[k] if plain else _Call(ops[k], state, state.weighting)
                inp.users += 1
                probes.append((0, k, op, inp))
        return probes

    def _inspect(self, ops: Sequence[nn.Module], args: tuple, kwargs: dict[str, Any]
                 ) -> torch.Tensor:
        inspection: Inspection = self.__dict__["_state"].inspection
        label = self._key
        outs = []
        params, madds = [], []
        for name, op in zip(self.names, ops):
            count = _MaddCounter(op)
            with count:
                y = op(*args, **kwargs)
            if not isinstance(y, torch.Tensor):
                raise NaspError(f"candidate {name!r} of Choice {label!r} returns a "
                                f"{type(y).__name__}, not a tensor",
                                "a candidate must return one tensor (mixtures add them up)")
            outs.append(y)
            params.append(float(sum(p.numel() for p in op.parameters())))
            madds.append(count.per_sample(y))
        shapes = {name: _shapes(y) for name, y in zip(self.names, outs)}
        if len(set(shapes.values())) > 1:
            shown = ", ".join(f"{n}: {s}" for n, s in shapes.items())
            raise NaspError(f"the candidates of Choice {label!r} give outputs of different "
                            f"shapes ({shown})", "every candidate must map the choice's input "
                            "to the same shape (e.g. pad convolutions to keep the size)")
        inspection.calls[label] = inspection.calls.get(label, 0) + 1
        if id(self) in inspection.seen:  # the same module called again: its work, not weights
            params = [0.0] * len(params)
        inspection.seen.add(id(self))
        for table, values in ((inspection.params, params), (inspection.madds, madds)):
            row = table.setdefault(label, [0.0] * len(values))
            table[label] = [a + b for a, b in zip(row, values)]
        inspection.inputs.setdefault(label, []).append((self, args, kwargs))
        return outs[0]


class InputChoice(ChoiceModule):
    """``k`` of ``n`` input tensors, chosen by the search.

    ``forward(inputs)`` takes a list of ``n`` tensors and returns their ``reduction`` over the
    chosen ones: ``"sum"`` (default), ``"mean"``, or ``"concat"`` (along dim 1, in input
    order). The chosen indices are a keep-k choice, like a cell node's two strongest edges."""

    def __init__(self, n: int, k: int = 1, label: str | None = None,
                 reduction: str = "sum") -> None:
        super().__init__(label)
        for name, v in (("n", n), ("k", k)):
            if isinstance(v, bool) or not isinstance(v, int):
                raise NaspError(f"InputChoice {name}={v!r} is not a whole number",
                                "e.g. nasp.InputChoice(n=3, k=2)")
        if n < 1:
            raise NaspError(f"InputChoice n={n}: it needs at least one input", "use n >= 1")
        if not 1 <= k <= n:
            raise NaspError(f"InputChoice k={k} with n={n}: it keeps between 1 and n inputs",
                            f"use 1 <= k <= {n}")
        if reduction not in REDUCTIONS:
            raise NaspError(f"InputChoice reduction {reduction!r} is unknown",
                            f"use one of: {', '.join(REDUCTIONS)}")
        self.n, self.k, self.reduction = n, k, reduction

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, reduction={self.reduction!r}"

    def forward(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        if not isinstance(inputs, list | tuple) or len(inputs) != self.n:
            got = (f"{len(inputs)} inputs" if isinstance(inputs, list | tuple)
                   else f"a {type(inputs).__name__}")
            raise NaspError(f"InputChoice {self._key!r} takes a list of {self.n} tensors, "
                            f"got {got}", f"pass exactly {self.n} tensors in a list")
        w = self._weighting()
        if w is None:
            return self._inspect(inputs)
        if self.reduction == "concat":
            return self._concat(inputs, w)
        total, probes = None, []
        probing = w.weights is not None and torch.is_grad_enabled()
        for j, x in enumerate(inputs):
            code = w.plan[j][0]
            if code == RUN:
                y = x if w.weights is None else w.weights[j, 0] * x
                total = y if total is None else total + y
            elif code == PROBE and probing:
                inp = ProbeInput(x)
                inp.users += 1
                probes.append((j, 0, _IDENTITY, inp))
        if total is None:  # a mixture may have switched every input off (ASAP)
            total = torch.zeros_like(inputs[0])
        if probes:
            total = probe_node(total, w.weights, probes)
        return total / self.k if self.reduction == "mean" else total

    def _concat(self, inputs: Sequence[torch.Tensor], w: CellWeighting) -> torch.Tensor:
        """Slots hold the chosen inputs in input order. Its continuous extension (what a
        mixture runs and what a probe differentiates): an input not chosen adds weight/k of
        itself to every slot, so its gradient is ⟨mean over slots of ∂L/∂slot, x_j⟩."""
        k = self.k
        run = [j for j in range(self.n) if w.plan[j][0] == RUN]
        if w.weights is not None and len(run) > k:  # a mixture: the k heaviest hold slots
            wv = w.weights[:, 0]
            stacked = torch.stack(list(inputs))
            top = wv.topk(k).indices.sort().values
            view = (k,) + (1,) * (stacked.dim() - 1)
            held = stacked.index_select(0, top) * wv.index_select(0, top).view(view)
            spread = (torch.tensordot(wv, stacked, dims=1) - held.sum(0)) / k
            return (held + spread).movedim(0, 1).flatten(1, 2)
        slots = [inputs[j] if w.weights is None else w.weights[j, 0] * inputs[j] for j in run]
        probes = []
        if w.weights is not None and torch.is_grad_enabled():
            for j in range(self.n):
                if w.plan[j][0] == PROBE:
                    inp = ProbeInput(inputs[j])
                    inp.users += 1
                    probes.append((j, 0, _IDENTITY, inp))
        if probes:
            spread = probe_node(torch.zeros_like(inputs[0]), w.weights, probes) / k
            slots = [y + spread for y in slots]
        if not slots:
            slots = [torch.zeros_like(inputs[0])] * k
        return torch.cat(slots, dim=1)

    def _inspect(self, inputs: Sequence[torch.Tensor]) -> torch.Tensor:
        label = self._key
        for j, x in enumerate(inputs):
            if not isinstance(x, torch.Tensor):
                raise NaspError(f"input {j} of InputChoice {label!r} is a "
                                f"{type(x).__name__}, not a tensor", "pass a list of tensors")
        shapes = [tuple(x.shape) for x in inputs]
        key = (lambda s: s[:1] + s[2:]) if self.reduction == "concat" else (lambda s: s)
        if len({key(s) for s in shapes}) > 1:
            what = "all but dim 1" if self.reduction == "concat" else "shape"
            raise NaspError(f"the inputs of InputChoice {label!r} differ in {what} "
                            f"({', '.join(map(str, shapes))})",
                            f"pass inputs that agree in {what} ({self.reduction} of any k "
                            "of them must be possible)")
        inspection: Inspection = self.__dict__["_state"].inspection
        inspection.calls[label] = inspection.calls.get(label, 0) + 1
        for table in (inspection.params, inspection.madds):
            table.setdefault(label, [0.0] * len(INPUT_OPS))
        chosen = list(inputs[: self.k])
        if self.reduction == "concat":
            return torch.cat(chosen, dim=1)
        total = torch.stack(chosen).sum(0)
        return total / self.k if self.reduction == "mean" else total


class _MaddCounter:
    """Mult-adds of the convolutions and linear layers inside a module during one call, per
    sample (the leading dimension of the output), counted with forward hooks."""

    def __init__(self, module: nn.Module) -> None:
        self.module, self.total, self.handles = module, 0, []

    def _hook(self, m: nn.Module, _inp: tuple, out: torch.Tensor) -> None:
        if isinstance(m, nn.modules.conv._ConvNd):
            k = 1
            for s in m.kernel_size:
                k *= s
            self.total += out.numel() * k * (m.in_channels // m.groups)
        elif isinstance(m, nn.Linear):
            self.total += out.numel() * m.in_features

    def __enter__(self) -> _MaddCounter:
        self.handles = [m.register_forward_hook(self._hook) for m in self.module.modules()
                        if isinstance(m, nn.modules.conv._ConvNd | nn.Linear)]
        return self

    def __exit__(self, *exc: Any) -> None:
        for h in self.handles:
            h.remove()

    def per_sample(self, out: torch.Tensor) -> float:
        n = out.shape[0] if out.dim() > 0 and out.shape[0] > 0 else 1
        return self.total / n


def choices(model: nn.Module) -> Iterator[tuple[str, ChoiceModule]]:
    """Every ``Choice`` and ``InputChoice`` of ``model`` with its qualified name (each module
    once, outermost first)."""
    for name, m in model.named_modules():
        if isinstance(m, ChoiceModule):
            yield name, m



def attach(model: nn.Module, name: str = MODEL_FAMILY, task: str = MODEL_FAMILY) -> ModelSpace:
    """The space of ``model``'s choices; binds every choice to one ``ChoiceState`` (the model's)
    and gives it its label (default: the module's qualified name). Checks that choices sharing
    a label agree."""
    if not isinstance(model, nn.Module):
        raise NaspError(f"the model is a {type(model).__name__}, not a torch.nn.Module",
                        "pass an nn.Module holding nasp.Choice / nasp.InputChoice modules")
    found = list(choices(model))
    if not found:
        raise NaspError(f"the model ({type(model).__name__}) holds no nasp.Choice or "
                        "nasp.InputChoice, so there is nothing to search",
                        "put the alternatives in nasp.Choice({...}) or nasp.InputChoice(n, k) "
                        "modules inside it")
    states = {id(m.__dict__["_state"]) for _, m in found if m.__dict__["_state"] is not None}
    state = found[0][1].__dict__["_state"] if len(states) == 1 and \
        found[0][1].__dict__["_state"] is not None else ChoiceState()
    groups: dict[str, list[ChoiceModule]] = {}
    for qualified, m in found:
        groups.setdefault(m.label or qualified or "choice", []).append(m)
    cells: dict[str, CellSpec] = {}
    kinds: dict[str, str] = {}
    for label, mods in groups.items():
        kind = {type(m).__name__ for m in mods}
        if len(kind) > 1:
            raise NaspError(f"label {label!r} is given to a Choice and an InputChoice",
                            "give them different labels")
        first = mods[0]
        if isinstance(first, Choice):
            for m in mods[1:]:
                if m.names != first.names:
                    raise NaspError(f"the Choices labelled {label!r} have different candidates "
                                    f"({list(first.names)} and {list(m.names)})",
                                    "give choices that share a label the same candidate names "
                                    "in the same order, or different labels")
            cells[label] = CellSpec(ops=first.names, nodes=1, inputs=1, keep=None)
        else:
            assert isinstance(first, InputChoice)
            for m in mods[1:]:
                if (m.n, m.k, m.reduction) != (first.n, first.k, first.reduction):
                    raise NaspError(f"the InputChoices labelled {label!r} differ (n, k, "
                                    f"reduction: {(first.n, first.k, first.reduction)} and "
                                    f"{(m.n, m.k, m.reduction)})",
                                    "give InputChoices that share a label the same n, k and "
                                    "reduction, or different labels")
            cells[label] = CellSpec(ops=INPUT_OPS, nodes=1, inputs=first.n, keep=first.k)
        kinds[label] = type(first).__name__
        for m in mods:
            m.__dict__["_state"] = state
            m.__dict__["_key"] = label
            if isinstance(m, Choice):
                m.__dict__["_nested"] = any(isinstance(c, ChoiceModule)
                                            for c in m.candidates.modules())
    return ModelSpace(name=name, task=task, cells=cells, family=MODEL_FAMILY, kinds=kinds,
                      state=state, description=f"{len(cells)} choices of {type(model).__name__}")


def arch_weighting(space: ModelSpace, arch: Mapping[str, Any]) -> Weighting:
    """The discrete weighting that runs ``arch``: unit weights, chosen ops only."""
    out = {}
    for label, edges in space.record_edges(arch).items():
        cell = space.cells[label]
        plan = [[SKIP] * cell.num_ops for _ in range(cell.num_edges)]
        for e, k in edges:
            plan[e][k] = RUN
        out[label] = CellWeighting(None, tuple(tuple(row) for row in plan))
    return out


@contextmanager
def use(model: nn.Module, arch: Mapping[str, Any]) -> Iterator[ModelSpace]:
    """Run ``model`` (with its choices) under one architecture inside the block: what the search
    network computes for ``arch``, e.g. to compare with ``nasp.fix(model, arch)``."""
    space = attach(model)
    with space.state.bound(arch_weighting(space, arch)):
        yield space
