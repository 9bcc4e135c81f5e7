"""``nasp report``: one self-contained HTML page (comparison table, plots, cell diagrams).

The page has no external files, scripts or fonts, so it opens offline and can be attached to
an issue or mailed. It stays compact over many runs: per strategy one figure of the final
architecture weights over its seeds, per run its numbers and cell diagram. ``--full`` adds every
run's architecture weights per epoch (several large figures per run).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from nasp.cli.options import path_arg, path_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", metavar="RUN", type=path_text,
                        help="a run folder, or a folder holding run folders (e.g. a sweep)")
    parser.add_argument("-o", "--out", type=path_arg, default=Path("report.html"),
                        help="HTML file to write (default: ./report.html)")
    parser.add_argument("--title", default="nasp report", help="page title")
    parser.add_argument("--full", action="store_true",
                        help="also every run's architecture weights per epoch (a page several "
                        "times larger)")


def run(args: argparse.Namespace) -> int:
    from nasp.files import check_output, output_errors
    from nasp.viz.report import write_report

    check_output(args.out, "-o")
    with output_errors(args.out):  # -o under a file or an unwritable place: one line
        print(write_report(args.runs, args.out, title=args.title, full=args.full))
    return 0
