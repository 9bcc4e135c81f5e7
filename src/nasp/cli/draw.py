"""``nasp draw``: draw the cells of an architecture.

GENOTYPE is a genotype.json file, a search run folder, a published architecture's name
(e.g. DARTS_V2, NASP_12; add ``--task lm`` for the recurrent DARTS_V1/DARTS_V2), or a
NAS-Bench-201 cell string. The format
follows the suffix of ``-o``: .svg, .png or .pdf, drawn with matplotlib (nothing else to
install), or .dot/.gv for Graphviz's DOT text. ``--engine graphviz`` lays the cells out with
Graphviz's ``dot`` program instead, where it is installed. Both cells of a CNN go into one file;
``--split`` writes one file per cell type instead (cell-normal.svg, cell-reduce.svg).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasp.cli.options import path_arg, path_text
from nasp.errors import NaspError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("genotype", metavar="GENOTYPE", type=path_text,
                        help="genotype.json, a search run folder, a published name, or a "
                        "NAS-Bench-201 cell string ('|nor_conv_3x3~0|+|...|')")
    parser.add_argument("-o", "--out", type=path_arg, default=Path("cell.svg"),
                        help="output file; .svg .png .pdf .dot or .gv (default: cell.svg)")
    parser.add_argument("--task", choices=("cnn", "lm"), default=None,
                        help="which published architectures a name refers to (default: cnn, "
                        "then lm)")
    parser.add_argument("--split", action="store_true",
                        help="one file per cell type instead of one file with all cells")
    parser.add_argument("--engine", choices=("matplotlib", "graphviz"), default="matplotlib",
                        help="who lays out .svg/.png/.pdf: matplotlib (default, no system "
                        "program) or Graphviz's dot (must be installed)")


def _from_file(path: Path) -> dict[str, Any]:
    from nasp.viz.runs import load_run, read_json

    if path.is_dir():
        if (path / "genotype.json").is_file():
            return read_json(path / "genotype.json")
        run = load_run(path)
        run.require("genotype.json")
        assert run.genotype is not None
        return run.genotype
    data = read_json(path)
    if isinstance(data, dict) and isinstance(data.get("genotype"), dict):
        return data["genotype"]  # a result.json
    return data


def _published(name: str, task: str | None) -> dict[str, Any]:
    try:
        from nasp.genotype import get_genotype
    except ImportError:
        raise NaspError(f"{name!r} is not a file or folder",
                        "pass a genotype.json or a search run folder") from None
    errors = []
    for t in [task] if task else ["cnn", "lm"]:
        try:
            return get_genotype(name, task=t).to_dict()
        except NaspError as e:
            errors.append(e)
    raise errors[0]


def load_genotype(spec: str, task: str | None = None) -> dict[str, Any]:
    """A genotype dict from a file, a run folder or (if nasp.genotype is there) a name."""
    path = Path(spec)
    return _from_file(path) if path.exists() else _published(spec, task)


def run(args: argparse.Namespace) -> int:
    from nasp.files import check_output, output_errors
    from nasp.viz.cells import draw_genotype

    genotype = load_genotype(args.genotype, args.task)
    check_output(args.out, "-o")  # also the folder of --split's files, before any drawing
    with output_errors(args.out):  # -o under a file or an unwritable place: one line
        paths = draw_genotype(genotype, args.out, split=args.split, engine=args.engine)
    for path in paths:
        print(path)
    return 0
