"""The plain, printable record of a discrete architecture, DARTS-style.

A genotype lists, per cell type, ``keep`` (op, input) pairs per intermediate node in node order,
and the nodes the cell output combines. It round-trips through JSON unchanged and prints the
way DARTS's genotypes do, so published architectures can be pasted in and compared.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nasp.errors import NaspError

RNN_ACTIVATIONS = ("none", "tanh", "relu", "sigmoid", "identity")
CNN_CELLS = ("normal", "reduce")
RNN_CELLS = ("recurrent",)


@dataclass(frozen=True)
class Genotype:
    """``cells[type]`` is a tuple of (op, input) pairs; ``concat[type]`` the combined nodes."""

    cells: dict[str, tuple[tuple[str, int], ...]]
    concat: dict[str, tuple[int, ...]]

    @property
    def task(self) -> str:
        return "lm" if "recurrent" in self.cells else "cnn"

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

    def to_dict(self) -> dict[str, list]:
        out: dict[str, list] = {}
        for cell, pairs in self.cells.items():
            out[cell] = [[op, int(j)] for op, j in pairs]
            out[self._concat_key(cell)] = [int(n) for n in self.concat[cell]]
        return out

    def to_json(self, path: str | os.PathLike | None = None) -> str:
        text = json.dumps(self.to_dict(), indent=None)
        if path is not None:
            Path(path).write_text(text + "\n")
        return text

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "genotype") -> Genotype:
        if not isinstance(data, dict):
            raise NaspError(f"{source}: expected a JSON object", "see docs/run-folder.md")
        names = RNN_CELLS if "recurrent" in data else CNN_CELLS
        cells, concat = {}, {}
        for cell in names:
            ckey = cls._concat_key(cell)
            if cell not in data or ckey not in data:
                raise NaspError(
                    f"{source}: missing key {cell!r} or {ckey!r}",
                    "a CNN genotype has normal, normal_concat, reduce, reduce_concat; "
                    "a recurrent one has recurrent, concat",
                )
            try:
                cells[cell] = tuple((str(op), int(j)) for op, j in data[cell])
                concat[cell] = tuple(int(n) for n in data[ckey])
            except (TypeError, ValueError):
                raise NaspError(
                    f"{source}: {cell!r} must be a list of [op, input] pairs", "fix the JSON"
                ) from None
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
                            "pass a genotype.json, a search run folder or a published name: "
                            + ", ".join(sorted(set(GENOTYPES["cnn"]) | set(GENOTYPES["lm"]))))
        try:
            data = json.loads(p.read_text())
        except json.JSONDecodeError as e:
            raise NaspError(f"{p} is not valid JSON: {e}", "fix or regenerate the file") from None
        return cls.from_dict(data, str(p))

    def validate(self, source: str = "genotype") -> None:
        """Check op names, input indices and edge counts; raise ``NaspError`` naming the fault."""
        from nasp.ops import OPS

        recurrent = self.task == "lm"
        inputs, nodes, keep = (1, 8, 1) if recurrent else (2, 4, 2)
        for cell, pairs in self.cells.items():
            if len(pairs) != nodes * keep:
                raise NaspError(
                    f"{source}: cell {cell!r} has {len(pairs)} edges, expected {nodes * keep} "
                    f"({keep} per node for {nodes} nodes)", "fix the genotype's edge list")
            for e, (op, j) in enumerate(pairs):
                node = e // keep
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

    def __str__(self) -> str:
        parts = []
        for cell, pairs in self.cells.items():
            parts.append(f"{cell}={[(op, j) for op, j in pairs]}")
            parts.append(f"{self._concat_key(cell)}={list(self.concat[cell])}")
        return f"Genotype({', '.join(parts)})"

    __repr__ = __str__


def cnn_genotype(normal: list, reduce: list) -> Genotype:
    return Genotype({"normal": tuple(normal), "reduce": tuple(reduce)},
                    {"normal": (2, 3, 4, 5), "reduce": (2, 3, 4, 5)})


def rnn_genotype(recurrent: list) -> Genotype:
    return Genotype({"recurrent": tuple(recurrent)}, {"recurrent": tuple(range(1, 9))})


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
    """A published genotype by name (for ``task``), or one read from a JSON file / run folder."""
    key = str(name_or_path)
    if key in GENOTYPES.get(task, {}):
        return GENOTYPES[task][key]
    if not os.path.exists(key) and os.sep not in key and not key.endswith(".json"):
        names = ", ".join(sorted(GENOTYPES.get(task, {})))
        raise NaspError(f"unknown genotype {key!r} for task {task!r}",
                        f"pass a genotype.json path, a search run folder, or one of: {names}")
    return Genotype.from_json(key)
