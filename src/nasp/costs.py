"""Cost tables: what each candidate op costs where it would sit in the evaluation network.

``profile`` builds the evaluation network ``nasp train`` would build for the data (stem,
``layers`` cells with reductions at 1/3 and 2/3 depth, head) and finds every distinct place
an op of the space can occupy: a *position* is (cell type, stride, channels, input size).
Normal cells give one position per stage; a reduction cell gives two, its edges from the two
cell inputs (stride 2, at the input resolution) and its edges between nodes (stride 1, at
half of it). Every op of the cell type is built there as the evaluation network builds it
(affine BN, bare pools) and measured: latency on the device (``nasp.latency``: warm-up, median
of repeats, batch ``batch_size``), parameters, and multiply-adds per image (convolutions and
linear layers, as ``nasp info`` counts them). What no architecture choice changes is measured
as one part, the *skeleton*: the evaluation network itself with every op replaced by a
pass-through (the input, or every second pixel at stride 2), so it holds the stem, each cell's
input preprocessing, node sums and concatenation, the head, and the forward pass's own Python
work. A genotype's network cost is then predicted by addition: skeleton plus its ops. (The
pass-throughs' calls, about a microsecond each, are counted twice; measured, they are under 1%
of a network's latency.)

The JSON file (``format`` "nasp-cost-table", ``version`` 1)::

    {"format": "nasp-cost-table", "version": 1, "space": "nasp-7",
     "device": {"type": "cpu", "name": "...", "threads": 1}, "torch": "2.13.0",
     "batch_size": 1, "dtype": "float32", "clock": "wall", "warmup": 5, "repeats": 20,
     "network": {"data": "fashion-mnist-sample", "input_shape": [1, 28, 28],
                 "num_classes": 10, "channels": 16, "layers": 8, "nodes": 4},
     "positions": [{"cell_type": "reduce", "stride": 2, "channels": 32, "input_size": [28, 28],
                    "cells": [2], "ops": {"sep_conv_3x3": {"latency_ms": 0.21,
                    "latency_iqr_ms": 0.01, "params": 1856, "madds": 361984}, ...}}, ...],
     "fixed": [{"part": "skeleton", "latency_ms": ..., "latency_iqr_ms": ...,
                "params": ..., "madds": ...}]}

``latency_ms`` is per call of the whole batch; ``params`` and ``madds`` do not depend on the
batch (``madds`` is per image). ``cells`` lists the cells (0-based) where a position occurs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.device import device_info
from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.latency import Timing, modules_latency
from nasp.ops import module_by_module
from nasp.spaces.base import SearchSpace
from nasp.supernet.model import ModelNet

TABLE_FORMAT, TABLE_VERSION = "nasp-cost-table", 1
KINDS = {"params": "params", "madds": "madds", "latency": "latency_ms"}
Progress = Callable[[str], None]


class PassThrough(nn.Module):
    """An op's stand-in in the skeleton: output of the op's shape at almost no cost."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.stride == 1 else x[:, :, ::self.stride, ::self.stride]


def _check_space(space: SearchSpace) -> None:
    if space.family == "nb201":
        return
    if space.task != "cnn" or set(space.cells) != {"normal", "reduce"} or any(
            (s.inputs, s.nodes, s.keep) != (2, 4, 2) for s in space.cells.values()):
        raise NaspError(f"space {space.name!r} has no DARTS-style evaluation network to profile",
                        "use a CNN space with normal and reduction cells (darts, nasp-7, "
                        "nasp-12) or nb201")


def _probe_genotype(space: SearchSpace) -> Genotype:
    """A genotype of the space's cell shape: only the network's geometry matters here."""
    if space.family == "nb201":  # every edge a convolution: every edge runs
        spec = space.cells["cell"]
        return Genotype({"cell": tuple(("nor_conv_3x3", j) for _, j in spec.edges)},
                        {"cell": tuple(spec.concat)})
    cells, concat = {}, {}
    for t, spec in space.cells.items():
        op = spec.ops[spec.final_ops[0]]
        cells[t] = tuple((op, j) for _ in range(spec.nodes) for j in range(spec.keep))
        concat[t] = tuple(spec.concat)
    return Genotype(cells, concat)


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _madds(module: nn.Module, shape: tuple[int, ...]) -> int:
    from nasp.models.cnn import count_flops

    return count_flops(module, shape)


def network_layout(space: SearchSpace, input_shape: tuple[int, int, int], num_classes: int,
                   channels: int, layers: int) -> tuple[list[dict[str, Any]], nn.Module]:
    """The op positions of the evaluation network, and its skeleton (see the module doc)."""
    from nasp.models.cnn import build_eval_model

    _check_space(space)
    c, h, w = input_shape
    net = build_eval_model(_probe_genotype(space), c, num_classes, (h, w), channels=channels,
                           layers=layers, auxiliary=False).eval()
    if space.family == "nb201":
        return _nb201_layout(net, c, h, w)
    sizes: dict[int, tuple[int, ...]] = {}
    # the BN ending each cell's input preprocessing; layer by layer, so its module runs
    hooks = [cell.preprocess1[-1].register_forward_hook(
        lambda _m, _inp, out, i=i: sizes.__setitem__(i, tuple(out.shape[1:])))
        for i, cell in enumerate(net.cells)]
    try:
        with torch.no_grad(), module_by_module():
            net(torch.zeros(1, c, h, w))
    finally:
        for hk in hooks:
            hk.remove()
    positions: dict[tuple, dict[str, Any]] = {}
    for i, cell in enumerate(net.cells):
        t = "reduce" if cell.reduction else "normal"
        cc, ch, cw = sizes[i]
        places = [(1, ch, cw)] if not cell.reduction else \
            [(2, ch, cw), (1, -(-ch // 2), -(-cw // 2))]
        for stride, ph, pw in places:
            key = (t, stride, cc, ph, pw)
            pos = positions.setdefault(key, {"cell_type": t, "stride": stride, "channels": cc,
                                             "input_size": [ph, pw], "cells": []})
            pos["cells"].append(i)
        cell.ops = nn.ModuleList(
            PassThrough(2 if cell.reduction and j < space.cells[t].inputs else 1)
            for j in cell.inputs)
    return list(positions.values()), net


def _nb201_layout(net: nn.Module, c: int, h: int, w: int
                  ) -> tuple[list[dict[str, Any]], nn.Module]:
    """NAS-Bench-201's network: one position per stage (all six edges of a cell see the same
    input); the skeleton's cells run every edge as a pass-through (their node sums)."""
    from nasp.models.nb201 import NB201Cell

    sizes: dict[int, tuple[int, ...]] = {}
    cells = [(i, m) for i, m in enumerate(net.cells) if isinstance(m, NB201Cell)]
    hooks = [m.register_forward_hook(lambda _m, inp, _out, i=i: sizes.__setitem__(
        i, tuple(inp[0].shape[1:]))) for i, m in cells]
    try:
        with torch.no_grad(), module_by_module():
            net(torch.zeros(1, c, h, w))
    finally:
        for hk in hooks:
            hk.remove()
    positions: dict[tuple, dict[str, Any]] = {}
    for k, (i, cell) in enumerate(cells):
        cc, ch, cw = sizes[i]
        pos = positions.setdefault((cc, ch, cw), {"cell_type": "cell", "stride": 1,
                                                  "channels": cc, "input_size": [ch, cw],
                                                  "cells": []})
        pos["cells"].append(k)
        cell.edges = nn.ModuleList(PassThrough(1) for _ in cell.edges)
        cell.runs = [True] * len(cell.edges)
        cell.droppable = [False] * len(cell.edges)
    return list(positions.values()), net


def _entry(module: nn.Module, shape: tuple[int, ...], t: Timing) -> dict[str, Any]:
    return {"latency_ms": t.median_s * 1e3, "latency_iqr_ms": t.iqr_s * 1e3,
            "params": _params(module), "madds": _madds(module, shape)}


Item = tuple[dict[str, Any], nn.Module, tuple[int, ...]]


def plan(space: SearchSpace, input_shape: tuple[int, int, int], num_classes: int,
         channels: int, layers: int, data: str | None = None
         ) -> tuple[dict[str, Any], list[Item]]:
    """A cost table without measurements, and what to measure for it: (the entry the result
    goes to, module, input shape without the batch) for every op at every position and for the
    skeleton. ``fill`` completes the table from their timings."""
    from nasp.ops import make_op

    if space.family == "nb201":
        from nasp.nb201.ops import make_op
    positions, skeleton = network_layout(space, input_shape, num_classes, channels, layers)
    items: list[Item] = []
    for pos in positions:
        pos["ops"] = {}
        for op in space.cells[pos["cell_type"]].ops:
            pos["ops"][op] = {}
            module = make_op(op, pos["channels"], pos["stride"], affine=True)
            items.append((pos["ops"][op], module, (pos["channels"], *pos["input_size"])))
    parts = [{"part": "skeleton"}]
    items.append((parts[0], skeleton, tuple(input_shape)))
    table = {"format": TABLE_FORMAT, "version": TABLE_VERSION, "space": space.name,
             "network": {"data": data, "input_shape": list(input_shape),
                         "num_classes": num_classes, "channels": channels, "layers": layers,
                         "nodes": next(iter(space.cells.values())).nodes},
             "positions": positions, "fixed": parts}
    return table, items


def fill(items: list[Item], timings: list[Timing]) -> None:
    for (slot, module, shape), t in zip(items, timings, strict=True):
        slot.update(_entry(module.cpu(), shape, t))


def item_inputs(items: list[Item], batch_size: int, seed: int = 0
                ) -> list[tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    """(module, inputs) pairs for ``nasp.latency.modules_latency``: seeded normal batches."""
    gen = torch.Generator().manual_seed(seed)
    return [(m, (torch.randn(batch_size, *shape, generator=gen),)) for _, m, shape in items]


def profile(space: SearchSpace, input_shape: tuple[int, int, int], num_classes: int,
            channels: int, layers: int, device: torch.device, batch_size: int = 1,
            warmup: int = 5, repeats: int = 20, data: str | None = None,
            clock: str = "wall", progress: Progress | None = None) -> dict[str, Any]:
    """The cost table of ``space`` in the evaluation network of this shape (module doc).
    Everything is timed together, round-robin (``nasp.latency``)."""
    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise NaspError("batch size and repeats must be at least 1, warm-up at least 0",
                        "use --batch-size 1 or more, --repeats 1 or more")
    table, items = plan(space, input_shape, num_classes, channels, layers, data)
    if progress:
        progress(f"timing {len(items)} modules, {repeats} rounds")
    fill(items, modules_latency(item_inputs(items, batch_size), device, warmup, repeats, clock))
    measured = {"device": device_info(device), "torch": torch.__version__.split("+")[0],
                "batch_size": batch_size, "dtype": "float32", "clock": clock,
                "warmup": warmup, "repeats": repeats}
    return {**{k: table[k] for k in ("format", "version", "space")}, **measured,
            **{k: table[k] for k in ("network", "positions", "fixed")}}


def save_table(table: dict[str, Any], path: str | os.PathLike) -> None:
    from nasp.run_folder import write_json

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    write_json(Path(path), table)


def load_table(table: dict[str, Any] | str | os.PathLike) -> dict[str, Any]:
    """A cost table from its file (or the dict itself), checked for format and version."""
    if not isinstance(table, dict):
        from nasp.files import read_json

        table = read_json(Path(table), "give --cost-table a JSON file made by nasp profile")
    if not isinstance(table, dict) or table.get("format") != TABLE_FORMAT:
        raise NaspError("not a nasp cost table", "make one with nasp profile -o costs.json")
    if table.get("version") != TABLE_VERSION:
        raise NaspError(f"cost table version {table.get('version')} is not supported "
                        f"(this nasp reads version {TABLE_VERSION})", "profile again")
    return table


def _kind_key(kind: str) -> str:
    if kind not in KINDS:
        raise NaspError(f"unknown cost kind {kind!r}", f"use one of: {', '.join(KINDS)}")
    return KINDS[kind]


def _cost(pos: dict[str, Any], op: str, key: str, space_name: str) -> float:
    entry = pos["ops"].get(op)
    if entry is None:
        raise NaspError(f"the cost table has no {op!r} for {pos['cell_type']} cells",
                        f"profile the space you search: nasp profile --space {space_name}")
    return float(entry[key])


def cost_matrices(table: dict[str, Any] | str | os.PathLike, space: SearchSpace,
                  kind: str) -> dict[str, torch.Tensor]:
    """``{cell_type: (edges, ops)}`` raw costs: entry [e, k] is what op k on edge e costs in
    the whole evaluation network, summed over every cell of that type (A is shared by them).
    Edges from the cell inputs of a reduction cell cost their stride-2 values. float64."""
    table, key = load_table(table), _kind_key(kind)
    _check_space(space)
    if table.get("space") not in (None, space.name):
        raise NaspError(f"the cost table is of space {table['space']!r}, the search's is "
                        f"{space.name!r}", f"profile it: nasp profile --space {space.name}")
    out = {}
    for t, spec in space.cells.items():
        m = torch.zeros(spec.num_edges, spec.num_ops, dtype=torch.float64)
        for e in range(spec.num_edges):
            stride = spec.stride(e)
            for pos in table["positions"]:
                if pos["cell_type"] != t or pos["stride"] != stride:
                    continue
                for k, op in enumerate(spec.ops):
                    m[e, k] += len(pos["cells"]) * _cost(pos, op, key, space.name)
        out[t] = m
    return out


def _predict_nb201(table: dict[str, Any], genotype: Genotype, key: str) -> float:
    """Skeleton plus, in every cell, the ops that run (dead ends skipped, as the network
    does: ``nasp.cost_model.live_edges``)."""
    from nasp.spaces.nb201 import NB201_CELL
    from nasp.spaces.selection import live_edges

    pairs = genotype.cells["cell"]
    sel = tuple(NB201_CELL.ops.index(op) for op, _ in pairs)
    total = sum(float(p[key]) for p in table["fixed"])
    for pos in table["positions"]:
        for e in live_edges(sel, NB201_CELL, "free"):
            total += len(pos["cells"]) * _cost(pos, pairs[e][0], key, table["space"])
    return total


def predict(table: dict[str, Any] | str | os.PathLike, genotype: Genotype, kind: str) -> float:
    """A genotype's network cost by addition: the skeleton plus each cell's chosen ops at
    their positions (latency in ms at the table's batch size; params; madds per image)."""
    table, key = load_table(table), _kind_key(kind)
    if genotype.task != "cnn":
        raise NaspError("cost tables are for CNN genotypes", "pass a CNN genotype")
    if (genotype.family == "nb201") != (table.get("space") == "nb201"):
        raise NaspError(f"the cost table is of space {table.get('space')!r}, which does not "
                        "hold this genotype", "profile the genotype's space")
    if genotype.family == "nb201":
        return _predict_nb201(table, genotype, key)
    nodes = table["network"]["nodes"]
    for t, concat in genotype.concat.items():
        if len(concat) != nodes:
            raise NaspError(f"the genotype's {t} cell concatenates {len(concat)} nodes; the "
                            f"table's network concatenates {nodes}",
                            "profile with a space of the genotype's cell shape")
    where: dict[tuple[int, int], dict[str, Any]] = {}
    for pos in table["positions"]:
        for cell in pos["cells"]:
            where[(cell, pos["stride"])] = pos
    total = sum(float(p[key]) for p in table["fixed"])
    for cell in range(table["network"]["layers"]):
        stride2 = (cell, 2) in where
        t = "reduce" if stride2 else "normal"
        for op, j in genotype.cells[t]:
            pos = where[(cell, 2 if stride2 and j < 2 else 1)]
            total += _cost(pos, op, key, table["space"])
    return total


# --- a user's own model (--space FILE.py:FUNCTION) ---------------------------------------------
# Its table has "choices" in place of "positions": per label, what each candidate costs summed
# over every call of a Choice with that label (timed on the inputs those calls received in one
# forward pass), and a skeleton: the fixed network of one architecture minus its candidates.
# A network's cost is then the skeleton plus the candidates its architecture keeps.

def profile_model(ref: str, input_shape: tuple[int, int, int], num_classes: int,
                  device: torch.device, batch_size: int = 1, warmup: int = 5,
                  repeats: int = 20, data: str | None = None, clock: str = "wall",
                  progress: Progress | None = None) -> dict[str, Any]:
    """The cost table of the model ``ref`` builds (``FILE.py:FUNCTION``) for this input."""
    from nasp.models.fixed import fix
    from nasp.spaces.model import build_model

    if batch_size < 1 or repeats < 1 or warmup < 0:
        raise NaspError("batch size and repeats must be at least 1, warm-up at least 0",
                        "use --batch-size 1 or more, --repeats 1 or more")
    model = build_model(ref, input_shape[0], num_classes).eval()
    net = ModelNet(model)
    x = torch.randn(batch_size, *input_shape, generator=torch.Generator().manual_seed(0))
    net.inspect(lambda: model(x))
    assert net.inspection is not None
    space, found = net.space, net.inspection
    calls: list[tuple[tuple[str, str], nn.Module, tuple, dict]] = []
    for label, kind in space.kinds.items():
        if kind != "Choice":
            continue
        for choice, args, kwargs in found.inputs[label]:
            for name, cand in choice.candidates.items():
                calls.append(((label, name), cand, args, kwargs))
    # one architecture's network: its candidates' times come off it to leave the skeleton
    first = {label: (cell.ops[0] if space.kinds[label] == "Choice"
                     else list(range(cell.keep or cell.inputs)))
             for label, cell in space.cells.items()}
    whole = fix(model, first)
    items = [(whole, (x,))] + [(_Bound(cand, args, kwargs), ()) for _, cand, args, kwargs in calls]
    if progress:
        progress(f"timing {len(items)} modules, {repeats} rounds")
    timings = modules_latency(items, device, warmup, repeats, clock)
    choices: dict[str, dict[str, dict[str, float]]] = {}
    for k, ((label, name), _, _, _) in enumerate(calls):
        col = space.cells[label].ops.index(name)
        entry = choices.setdefault(label, {}).setdefault(name, {
            "latency_ms": 0.0, "latency_iqr_ms": 0.0, "params": found.params[label][col],
            "madds": found.madds[label][col]})
        entry["latency_ms"] += timings[k + 1].median_s * 1e3
        entry["latency_iqr_ms"] += timings[k + 1].iqr_s * 1e3
    held = sum(choices[label][name]["latency_ms"] for label, name in first.items()
               if space.kinds[label] == "Choice")
    skeleton = {"part": "skeleton", "latency_ms": timings[0].median_s * 1e3 - held,
                "latency_iqr_ms": timings[0].iqr_s * 1e3,
                "params": _params(whole) - sum(choices[label][name]["params"]
                                               for label, name in first.items()
                                               if space.kinds[label] == "Choice"),
                "madds": _madds_any(whole, input_shape) - sum(
                    choices[label][name]["madds"] for label, name in first.items()
                    if space.kinds[label] == "Choice")}
    return {"format": TABLE_FORMAT, "version": TABLE_VERSION, "space": ref,
            "device": device_info(device), "torch": torch.__version__.split("+")[0],
            "batch_size": batch_size, "dtype": "float32", "clock": clock, "warmup": warmup,
            "repeats": repeats,
            "network": {"data": data, "input_shape": list(input_shape),
                        "num_classes": num_classes},
            "choices": choices, "fixed": [skeleton]}


class _Bound(nn.Module):
    """A candidate called with the arguments its Choice received: timed as one module."""

    def __init__(self, module: nn.Module, args: tuple, kwargs: dict[str, Any]) -> None:
        super().__init__()
        self.module, self.args, self.kwargs = module, args, kwargs

    def _apply(self, fn: Any, recurse: bool = True) -> _Bound:  # .to(device) moves the inputs
        super()._apply(fn, recurse)
        self.args = tuple(fn(a) if isinstance(a, torch.Tensor) else a for a in self.args)
        self.kwargs = {k: fn(v) if isinstance(v, torch.Tensor) else v
                       for k, v in self.kwargs.items()}
        return self

    def forward(self) -> Any:
        return self.module(*self.args, **self.kwargs)


def _madds_any(module: nn.Module, shape: tuple[int, ...]) -> int:
    from nasp.models.cnn import count_flops

    return count_flops(module, shape)


def _model_table(table: dict[str, Any], space: SearchSpace) -> dict[str, Any]:
    if "choices" not in table:
        raise NaspError(f"the cost table is of the built-in space {table.get('space')!r}, not "
                        "of your model", "profile your model: nasp profile --space "
                        "FILE.py:FUNCTION")
    missing = [label for label, kind in getattr(space, "kinds", {}).items()
               if kind == "Choice" and label not in table["choices"]]
    if missing:
        raise NaspError(f"the cost table has no entry for choice(s) {', '.join(missing)} "
                        f"(it was made for {table.get('space')!r})",
                        "profile the model you search: nasp profile --space FILE.py:FUNCTION")
    return table


def model_cost_matrices(table: dict[str, Any] | str | os.PathLike, space: SearchSpace,
                        kind: str) -> dict[str, torch.Tensor]:
    """``{label: (edges, ops)}`` raw costs of a user model's choices (inputs cost 0)."""
    table, key = _model_table(load_table(table), space), _kind_key(kind)
    out = {}
    for label, cell in space.cells.items():
        m = torch.zeros(cell.num_edges, cell.num_ops, dtype=torch.float64)
        if getattr(space, "kinds", {}).get(label) == "Choice":
            for k, name in enumerate(cell.ops):
                entry = table["choices"][label].get(name)
                if entry is None:
                    raise NaspError(f"the cost table has no candidate {name!r} of {label!r}",
                                    "profile the model you search again")
                m[0, k] = float(entry[key])
        out[label] = m
    return out


def own_costs(net: ModelNet, kind: str, table: str | os.PathLike | None = None
              ) -> dict[str, torch.Tensor]:
    """A user model's raw (edges, ops) costs per label: from ``table`` (``nasp profile``)
    when given, else as its inspection measured them (parameters, mult-adds)."""
    if table is not None:
        return model_cost_matrices(load_table(table), net.space, kind)
    return net.raw_costs(kind)


def predict_model(table: dict[str, Any] | str | os.PathLike, space: SearchSpace,
                  arch: dict[str, Any], kind: str) -> float:
    """A user model's fixed-network cost by addition: skeleton plus the kept candidates."""
    table, key = _model_table(load_table(table), space), _kind_key(kind)
    total = sum(float(p[key]) for p in table["fixed"])
    for label, kind_ in getattr(space, "kinds", {}).items():
        if kind_ == "Choice":
            total += float(table["choices"][label][arch[label]][key])
    return total
