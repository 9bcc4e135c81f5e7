"""``nasp report``: one self-contained HTML page (comparison table, plots, cell diagrams).

The page has no external files, scripts or fonts, so it opens offline and can be attached to
an issue or mailed. Cell diagrams need Graphviz's ``dot``; without it the cells are listed as
text.
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN",
                        help="a run folder, or a folder holding run folders (e.g. a sweep)")
    parser.add_argument("-o", "--out", type=Path, default=Path("report.html"),
                        help="HTML file to write (default: ./report.html)")
    parser.add_argument("--title", default="nasp report", help="page title")


def run(args: argparse.Namespace) -> int:
    from nasp.viz.report import write_report

    print(write_report(args.runs, args.out, title=args.title))
    return 0
