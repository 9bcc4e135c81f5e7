"""Every import in nasp points down the layers README's Layout describes, or stays in its layer.

The layers are written once, here, top to bottom, as README's Layout lists them. Each module
belongs to the layer of its package (or its own name for a top-level module), so a new module in
an existing package is checked without touching this file; a module in no layer fails until it
is given one. Imports are read with ``ast`` from the source, including those inside functions
and under ``TYPE_CHECKING``: a lazy import is still a dependency, only a later one.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

import nasp

SRC = Path(nasp.__file__).resolve().parent  # src/nasp

# top to bottom; a module may import from its own layer and the layers below it
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    ("command line", ("nasp", "nasp.__main__", "nasp.cli")),
    ("comparisons", ("nasp.compare",)),
    ("python api", ("nasp.api", "nasp.choices")),
    ("loops", ("nasp.loops",)),
    ("export", ("nasp.export",)),
    ("tasks", ("nasp.tasks",)),
    ("configs", ("nasp.configs",)),
    ("strategies", ("nasp.strategies",)),
    ("costs", ("nasp.costs", "nasp.latency", "nasp.cost_model", "nasp.cost_fit")),
    ("run folder", ("nasp.run_folder",)),
    ("tensorboard", ("nasp.tensorboard",)),
    ("viz", ("nasp.viz",)),
    ("models", ("nasp.models",)),
    ("supernet", ("nasp.supernet",)),
    ("genotype and spaces", ("nasp.genotype", "nasp.spaces")),
    ("nb201", ("nasp.nb201",)),
    ("ops", ("nasp.ops", "nasp.rnn_ops")),
    ("data", ("nasp.data",)),
    ("devices and ranks", ("nasp.device", "nasp.distributed", "nasp.collectives",
                           "nasp.heartbeat", "nasp.compiled")),
    ("foundation", ("nasp.errors", "nasp.registry", "nasp.files", "nasp.version")),
]


def module_name(path: Path) -> str:
    parts = ("nasp", *path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def is_package(name: str) -> bool:
    return (SRC.parent / name.replace(".", "/") / "__init__.py").is_file()


def exists(name: str) -> bool:
    path = SRC.parent / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def layer_of(name: str) -> int | None:
    """Index in LAYERS of the layer holding module ``name``; the package root ``nasp`` (the
    public face, whose lazy attributes reach the API) is matched only by its own name."""
    best: tuple[int, int] | None = None  # (prefix length, layer)
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            hit = name == prefix or (prefix != "nasp" and name.startswith(prefix + "."))
            if hit and (best is None or len(prefix) > best[0]):
                best = (len(prefix), index)
    return None if best is None else best[1]


def imports(path: Path) -> list[tuple[int, str]]:
    """(line, module) of every nasp module ``path`` imports, wherever the statement is.
    ``from nasp.x import y`` is module ``nasp.x.y`` when that is a module, else ``nasp.x``."""
    name = module_name(path)
    package = name if is_package(name) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, up level - 1
                parts = package.split(".")
                up = parts[:len(parts) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            for alias in node.names:
                full = f"{base}.{alias.name}"
                out.append((node.lineno, full if exists(full) else base))
    return [(line, m) for line, m in out if m == "nasp" or m.startswith("nasp.")]


MODULES = sorted(SRC.rglob("*.py"))


def test_every_module_has_a_layer():
    missing = [module_name(p) for p in MODULES if layer_of(module_name(p)) is None]
    assert not missing, (f"modules in no layer: {', '.join(missing)}; add their package to "
                         "LAYERS in tests/test_layers.py and to README's Layout")


def upward_imports(paths: list[Path]) -> list[str]:
    found = []
    for path in paths:
        name = module_name(path)
        mine = layer_of(name)
        if mine is None:
            continue
        for line, target in imports(path):
            theirs = layer_of(target)
            if theirs is not None and theirs < mine:
                found.append(f"{path.relative_to(SRC.parent)}:{line}: {name} (layer "
                             f"'{LAYERS[mine][0]}') imports {target} (layer "
                             f"'{LAYERS[theirs][0]}', which is above it)")
    return found


def test_every_import_points_to_the_same_or_a_lower_layer():
    found = upward_imports(MODULES)
    assert not found, ("imports that point up the layers (README's Layout; move the shared "
                       "code down, or the importing module up):\n" + "\n".join(found))


def test_the_check_sees_an_upward_import_inside_a_function(tmp_path, monkeypatch):
    """The check itself: a lazy import of a higher layer in a low module is reported."""
    fake = tmp_path / "nasp"
    (fake / "data").mkdir(parents=True)
    (fake / "loops").mkdir()
    for pkg in (fake, fake / "data", fake / "loops"):
        (pkg / "__init__.py").write_text("")
    (fake / "loops" / "search.py").write_text("")
    (fake / "data" / "reader.py").write_text(
        "from nasp.errors import NaspError\n\n\ndef f():\n    from nasp.loops import search\n")
    monkeypatch.setattr(sys.modules[__name__], "SRC", fake)
    found = upward_imports([fake / "data" / "reader.py"])
    assert found == ["nasp/data/reader.py:5: nasp.data.reader (layer 'data') imports "
                     "nasp.loops.search (layer 'loops', which is above it)"]


@pytest.mark.parametrize("name, layer", [("nasp.supernet.choices", "supernet"),
                                         ("nasp.spaces.model", "genotype and spaces"),
                                         ("nasp.tasks.model", "tasks"),
                                         ("nasp.models.fixed", "models"),
                                         ("nasp", "command line"),
                                         ("nasp.nb201.network", "nb201")])
def test_new_modules_of_a_package_take_its_layer(name, layer):
    assert LAYERS[layer_of(name)][0] == layer


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """One shortest circle ``[a, b, ..., a]`` per group of modules that import each other,
    directly or through others (within a layer, where the layer check cannot see it)."""
    circles, seen = [], set()
    for start in sorted(graph):
        if start in seen:
            continue
        # breadth-first from start's imports back to start: the shortest circle through it
        paths = {m: [start, m] for m in sorted(graph[start])}
        queue = list(paths)
        while queue and start not in paths:
            here = queue.pop(0)
            for m in sorted(graph.get(here, ())):
                if m not in paths:
                    paths[m] = [*paths[here], m]
                    queue.append(m)
        if start in paths:
            circles.append(paths[start])
            seen.update(paths[start])
    return circles


def test_no_modules_import_each_other():
    graph = {module_name(p): {m for _, m in imports(p)} - {module_name(p)} for p in MODULES}
    circles = import_circles(graph)
    assert not circles, ("modules that import each other (move what both need into a module "
                         "below them):\n" + "\n".join(" -> ".join(c) for c in circles))


def test_the_circle_check_names_the_circle():
    graph = {"nasp.viz.cells": {"nasp.viz.plots", "nasp.errors"},
             "nasp.viz.plots": {"nasp.viz.runs", "nasp.viz.cells"}, "nasp.viz.runs": set()}
    assert import_circles(graph) == [["nasp.viz.cells", "nasp.viz.plots", "nasp.viz.cells"]]
