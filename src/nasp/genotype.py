"""The plain, printable record of a discrete architecture, DARTS-style.

A genotype lists, per cell type, ``keep`` (op, input) pairs per intermediate node in node order,
and the nodes the cell output combines. It round-trips through JSON unchanged and prints the
way DARTS's genotypes do, so published architectures can be pasted in and compared.

Three families share the record: DARTS-style CNN cells (``normal``, ``reduce``), recurrent
cells (``recurrent``), and NAS-Bench-201 cells (``cell``: all six edges of nodes 1..3 in node
order, output node 3), which also convert to and from the benchmark's cell string.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasp.errors import NaspError
from nasp.nb201 import strings as nb201_strings

RNN_ACTIVATIONS = ("none", "tanh", "relu", "sigmoid", "identity")
CNN_CELLS = ("normal", "reduce")
RNN_CELLS = ("recurrent",)
NB201_CELLS = ("cell",)
NB201_CONCAT = (3,)


# cell type -> (states before the first intermediate node, intermediate nodes, kept edges per
# node; None: node i keeps all of its inputs + i edges, as NAS-Bench-201 cells do). The one
# description of a genotype's cell shape: validation, drawings and tables read it from here.
CELL_SHAPES: dict[str, tuple[int, int, int | None]] = {
    "normal": (2, 4, 2), "reduce": (2, 4, 2), "recurrent": (1, 8, 1), "cell": (1, 3, None)}


def node_sizes(cell: str) -> list[int]:
    """Kept edges of each intermediate node of a ``cell``-type genotype, in node order."""
    inputs, nodes, keep = CELL_SHAPES[cell]
    return [inputs + i if keep is None else keep for i in range(nodes)]


def cell_edges(cell: str, pairs: Sequence[Sequence[Any]],
               sizes: Sequence[int] | None = None) -> list[tuple[int, int, str]]:
    """(node, input, op) per edge of a cell's (op, input) list, ``node`` 0-based and ``input``
    the genotype's own input index (numbered as arch.jsonl's ``edges``).

    The one walk from a genotype's flat edge list to the nodes its edges feed: validation,
    the search strategies (genotype -> (edge, op) selection) and the drawings and tables all
    read a cell through it, so they cannot disagree on which node an edge belongs to.
    ``sizes`` (edges kept per node) defaults to the cell type's shape (:func:`node_sizes`); a
    search space passes its own ``CellSpec`` shape.
    """
    per_node = node_sizes(cell) if sizes is None else list(sizes)
    if len(pairs) != sum(per_node):
        raise NaspError(f"cell {cell!r} has {len(pairs)} edges, expected {sum(per_node)} "
                        f"({', '.join(map(str, per_node))} for its {len(per_node)} nodes)",
                        "fix the genotype's edge list")
    nodes = [n for n, size in enumerate(per_node) for _ in range(size)]
    return [(n, int(j), str(op)) for n, (op, j) in zip(nodes, pairs, strict=True)]


def _whole(value: Any) -> bool:
    """A JSON whole number: ``1``, not ``1.7``, ``"1"`` or ``true``."""
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True)
class Genotype:
    """``cells[type]`` is a tuple of (op, input) pairs; ``concat[type]`` the combined nodes."""

    cells: dict[str, tuple[tuple[str, int], ...]]
    concat: dict[str, tuple[int, ...]]

    @property
    def task(self) -> str:
        return "lm" if "recurrent" in self.cells else "cnn"

    @property
    def family(self) -> str:
        """``"darts"`` (normal + reduce cells), ``"rnn"`` or ``"nb201"``."""
        if "recurrent" in self.cells:
            return "rnn"
        return "nb201" if "cell" in self.cells else "darts"

    @property
    def arch_str(self) -> str:
        """The NAS-Bench-201 cell string of an nb201 genotype."""
        if self.family != "nb201":
            raise NaspError(f"a {self.family} genotype has no NAS-Bench-201 cell string",
                            "only genotypes of the nb201 space do")
        return nb201_strings.format_arch(self.cells["cell"])

    @classmethod
    def from_arch_str(cls, text: str) -> Genotype:
        """The nb201 genotype of a benchmark cell string (``|nor_conv_3x3~0|+|...|``)."""
        return nb201_genotype(nb201_strings.parse_arch(text))

    # DARTS-style attribute access: genotype.normal, genotype.reduce_concat, genotype.recurrent
    def __getattr__(self, name: str) -> Any:
        cells = object.__getattribute__(self, "cells")
        concat = object.__getattribute__(self, "concat")
        if name in cells:
            return list(cells[name])
        if name.endswith("_concat") and name[: -len("_concat")] in cells:
            return list(concat[name[: -len("_concat")]])
        if name == "concat" and "recurrent" in cells:
            return list(concat["recurrent"])
        raise AttributeError(name)

    @staticmethod
    def _concat_key(cell: str) -> str:
        return "concat" if cell == "recurrent" else f"{cell}_concat"

    def edges(self, cell: str, sizes: Sequence[int] | None = None) -> list[tuple[int, int, str]]:
        """(node, input, op) per kept edge of ``cell`` (:func:`cell_edges`)."""
        return cell_edges(cell, self.cells[cell], sizes)

    def to_dict(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for cell, pairs in self.cells.items():
            out[cell] = [[op, int(j)] for op, j in pairs]
            out[self._concat_key(cell)] = [int(n) for n in self.concat[cell]]
        return out

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        """The genotype.json text (:func:`format_genotype_json`), written to ``path`` if given."""
        text = format_genotype_json(self.to_dict())
        if path is not None:
            Path(path).write_text(text)
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise NaspError(f"{source}: expected a JSON object", "see docs/run-folder.md")
        names = (RNN_CELLS if "recurrent" in data else NB201_CELLS if "cell" in data
                 else CNN_CELLS)
        cells, concat = {}, {}
        for cell in names:
            ckey = cls._concat_key(cell)
            if cell not in data or ckey not in data:
                raise NaspError(
                    f"{source}: missing key {cell!r} or {ckey!r}",
                    "a CNN genotype has normal, normal_concat, reduce, reduce_concat; "
                    "a recurrent one has recurrent, concat; an nb201 one has cell, cell_concat",
                )
            pairs, nodes = data[cell], data[ckey]
            if not isinstance(pairs, list | tuple) or not all(
                    isinstance(p, list | tuple) and len(p) == 2 and isinstance(p[0], str)
                    and _whole(p[1]) for p in pairs):
                raise NaspError(f"{source}: {cell!r} must be a list of [op, input] pairs with "
                                "whole-number inputs", "fix the genotype")
            if not isinstance(nodes, list | tuple) or not all(_whole(n) for n in nodes):
                raise NaspError(f"{source}: {ckey!r} must be a list of whole node numbers",
                                "fix the genotype")
            if len(set(nodes)) != len(nodes):
                raise NaspError(f"{source}: {ckey!r} {list(nodes)} names a node twice",
                                "list each node once")
            cells[cell] = tuple((op, int(j)) for op, j in pairs)
            concat[cell] = tuple(int(n) for n in nodes)
        geno = cls(cells, concat)
        geno.validate(source)
        return geno

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> Genotype:
        p = Path(path)
        if p.is_dir():
            p = p / "genotype.json"
        if not p.exists():
            raise NaspError(f"genotype file {p} does not exist",
                            "pass a genotype.json, a search run folder, a NAS-Bench-201 cell "
                            "string or a published name: "
                            + ", ".join(sorted(set(GENOTYPES["cnn"]) | set(GENOTYPES["lm"]))))
        try:
            data = json.loads(p.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise NaspError(f"{p} is not valid JSON: {e}", "fix or regenerate the file") from None
        except OSError as e:
            raise NaspError(f"cannot read {p}: {e.strerror or e}", "check the path") from None
        return cls.from_dict(data, str(p))

    def validate(self, source: str = "genotype") -> None:
        """Check op names, input indices and edge counts; raise ``NaspError`` naming the fault."""
        from nasp.ops import OPS

        if self.family == "nb201":
            self._validate_nb201(source)
            return
        recurrent = self.task == "lm"
        for cell, pairs in self.cells.items():
            inputs, nodes, keep = CELL_SHAPES[cell]
            if len(pairs) != sum(node_sizes(cell)):
                raise NaspError(
                    f"{source}: cell {cell!r} has {len(pairs)} edges, expected "
                    f"{sum(node_sizes(cell))} ({keep} per node for {nodes} nodes)",
                    "fix the genotype's edge list")
            for e, (node, j, op) in enumerate(self.edges(cell)):
                valid = op in RNN_ACTIVATIONS if recurrent else op in OPS
                if not valid:
                    known = RNN_ACTIVATIONS if recurrent else OPS.names()
                    raise NaspError(f"{source}: unknown op {op!r} in cell {cell!r}",
                                    f"use one of: {', '.join(known)}")
                if not 0 <= j < inputs + node:
                    raise NaspError(
                        f"{source}: edge {e} of cell {cell!r} (node {node}) takes input {j}, "
                        f"but only inputs 0..{inputs + node - 1} exist before that node",
                        "an input index must name a cell input or an earlier node")
            bad = [n for n in self.concat[cell] if not 0 <= n < inputs + nodes]
            if bad or not self.concat[cell]:
                raise NaspError(f"{source}: bad concat nodes {list(self.concat[cell])} in "
                                f"{cell!r}", f"use node indices in {inputs}..{inputs + nodes - 1}")

    def _validate_nb201(self, source: str) -> None:
        """A NAS-Bench-201 cell: exactly its six edges in node order, the benchmark's ops,
        output node 3 (every edge is kept, so the inputs are fixed; only the ops vary)."""
        extra = sorted(set(self.cells) - set(NB201_CELLS))
        if extra:
            raise NaspError(f"{source}: an nb201 genotype has one cell type 'cell', "
                            f"not also {extra}", "remove the other cell types")
        pairs = self.cells["cell"]
        expected = nb201_strings.edge_inputs()
        layout = "node 1: input 0; node 2: inputs 0, 1; node 3: inputs 0, 1, 2, in that order"
        if len(pairs) != len(expected):
            raise NaspError(f"{source}: cell 'cell' has {len(pairs)} edges, expected "
                            f"{len(expected)} (every edge of nodes 1..3)", layout)
        for e, ((op, j), want) in enumerate(zip(pairs, expected)):
            if op not in nb201_strings.OP_NAMES:
                raise NaspError(f"{source}: unknown op {op!r} in cell 'cell'",
                                f"use one of: {', '.join(nb201_strings.OP_NAMES)}")
            if j != want:
                raise NaspError(f"{source}: edge {e} of cell 'cell' takes input {j}, "
                                f"expected {want}", layout)
        if tuple(self.concat.get("cell", ())) != NB201_CONCAT:
            raise NaspError(f"{source}: bad concat nodes {list(self.concat.get('cell', ()))} "
                            "in 'cell'", "an nb201 cell's output is node 3: cell_concat [3]")

    def __str__(self) -> str:
        parts = []
        for cell, pairs in self.cells.items():
            parts.append(f"{cell}={[(op, j) for op, j in pairs]}")
            parts.append(f"{self._concat_key(cell)}={list(self.concat[cell])}")
        return f"Genotype({', '.join(parts)})"

    __repr__ = __str__


def format_genotype_json(genotype: dict[str, Any]) -> str:
    """genotype.json text a person can read: one key per line and one [op, input] edge per
    line, still plain JSON that ``json.loads`` reads back to the same dict.

    A run folder is read by people as often as by programs; a genotype on one line of 300
    characters hides which op feeds which node.
    """
    lines = []
    for k, (key, value) in enumerate(genotype.items()):
        comma = "," if k < len(genotype) - 1 else ""
        edges = (isinstance(value, (list, tuple)) and len(value) > 0
                 and all(isinstance(v, (list, tuple)) for v in value))
        if edges:
            body = ",\n".join(f"    {json.dumps(v)}" for v in value)
            lines.append(f"  {json.dumps(key)}: [\n{body}\n  ]{comma}")
        else:
            lines.append(f"  {json.dumps(key)}: {json.dumps(value)}{comma}")
    return "{\n" + "\n".join(lines) + "\n}\n" if lines else "{}\n"


def cnn_genotype(normal: list, reduce: list) -> Genotype:
    return Genotype({"normal": tuple(normal), "reduce": tuple(reduce)},
                    {"normal": (2, 3, 4, 5), "reduce": (2, 3, 4, 5)})


def rnn_genotype(recurrent: list) -> Genotype:
    return Genotype({"recurrent": tuple(recurrent)}, {"recurrent": tuple(range(1, 9))})


def nb201_genotype(pairs: list | tuple) -> Genotype:
    """An nb201 genotype from its six (op, input) pairs in node order."""
    geno = Genotype({"cell": tuple((str(op), int(j)) for op, j in pairs)},
                    {"cell": NB201_CONCAT})
    geno.validate()
    return geno


_s3, _d3, _m3 = "sep_conv_3x3", "dil_conv_3x3", "max_pool_3x3"
_a3, _sk = "avg_pool_3x3", "skip_connect"

# Published architectures (REFERENCE.md): name -> genotype, per task.
GENOTYPES: dict[str, dict[str, Genotype]] = {
    "cnn": {
        "DARTS_V1": cnn_genotype(
            [(_s3, 1), (_s3, 0), (_sk, 0), (_s3, 1), (_sk, 0), (_s3, 1), (_s3, 0), (_sk, 2)],
            [(_m3, 0), (_m3, 1), (_sk, 2), (_m3, 0), (_m3, 0), (_sk, 2), (_sk, 2), (_a3, 0)]),
        "DARTS_V2": cnn_genotype(
            [(_s3, 0), (_s3, 1), (_s3, 0), (_s3, 1), (_s3, 1), (_sk, 0), (_sk, 0), (_d3, 2)],
            [(_m3, 0), (_m3, 1), (_sk, 2), (_m3, 1), (_m3, 0), (_sk, 2), (_sk, 2), (_m3, 1)]),
        "NASP_12": cnn_genotype(
            [("conv_1x3_3x1", 0), ("conv_3x3", 1), (_d3, 2), ("conv_3x3", 1), (_d3, 2),
             ("conv_3x3", 0), (_sk, 0), (_d3, 3)],
            [(_m3, 0), (_m3, 1), (_sk, 2), ("max_pool_5x5", 1), (_sk, 2), (_sk, 3), (_sk, 0),
             (_sk, 1)]),
    },
    "lm": {
        "DARTS_V1": rnn_genotype(
            [("relu", 0), ("relu", 1), ("tanh", 2), ("relu", 3), ("relu", 4), ("identity", 1),
             ("relu", 5), ("relu", 1)]),
        "DARTS_V2": rnn_genotype(
            [("sigmoid", 0), ("relu", 1), ("relu", 1), ("identity", 1), ("tanh", 2),
             ("sigmoid", 5), ("tanh", 3), ("relu", 5)]),
    },
}


def get_genotype(name_or_path: str | os.PathLike, task: str = "cnn") -> Genotype:
    """A published genotype by name (for ``task``), a NAS-Bench-201 cell string, or one read
    from a JSON file / run folder."""
    key = str(name_or_path)
    if key in GENOTYPES.get(task, {}):
        return GENOTYPES[task][key]
    if nb201_strings.looks_like_arch_str(key) and not os.path.exists(key):
        return Genotype.from_arch_str(key)
    if not os.path.exists(key) and os.sep not in key and not key.endswith(".json"):
        names = ", ".join(sorted(GENOTYPES.get(task, {})))
        raise NaspError(f"unknown genotype {key!r} for task {task!r}",
                        f"pass a genotype.json path, a search run folder, or one of: {names}")
    return Genotype.from_json(key)


def resolve_genotype(value: Any, task: str) -> Genotype:
    """A ``Genotype`` from a dict, a path/run folder or a published name (what ``fixed`` and
    the Python API accept)."""
    if isinstance(value, Genotype):
        value.validate()
        return value
    if isinstance(value, dict):
        return Genotype.from_dict(value, "strategy option 'genotype'")
    if isinstance(value, str | os.PathLike):
        return get_genotype(value, task)
    raise NaspError(f"strategy option 'genotype' has type {type(value).__name__}",
                    'pass --strategy-options \'{"genotype": ...}\' with a genotype dict, a '
                    "genotype.json path, a search run folder or a published name (e.g. "
                    "DARTS_V2)")
