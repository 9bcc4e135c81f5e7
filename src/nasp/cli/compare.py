"""``nasp compare``: several strategies and seeds on one budget, scored alike, one table."""

from __future__ import annotations

import argparse

from nasp.cli.options import add_config_options, given_options, path_text
from nasp.configs import SearchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--strategies", default="nasp,darts,darts2,pa,pa-lazy,asap,random",
                        help="comma-separated strategies (default: %(default)s)")
    parser.add_argument("--seeds", default="0,1,2",
                        help="comma-separated seeds, one search per strategy and seed "
                             "(default: %(default)s)")
    parser.add_argument("--out", required=True, metavar="DIR", type=path_text,
                        help="folder of the runs (DIR/<strategy>-s<seed>/) and the table "
                             "(DIR/comparison.md, DIR/comparison.csv); an interrupted compare "
                             "continues there")
    parser.add_argument("--score-epochs", type=int, default=None, metavar="N",
                        help="epochs to train each final architecture from scratch on the "
                             "weight split before scoring it on the held-out test set "
                             "(default: the search's epochs)")
    parser.add_argument("--config", type=path_text,
                        help="JSON file of search options (CLI options override it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="redo runs already in DIR instead of reusing them")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--in-process", action="store_true",
                        help="run every search in this process instead of a fresh one per "
                             "(strategy, seed); CPU peak memory then accumulates over runs")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="run N searches at once, each in its own process with "
                             "cpu_count/N CPU threads (unless OMP_NUM_THREADS is set); their "
                             "wall times are then those of a shared machine, and progress "
                             "bars are off (default: 1)")
    parser.add_argument("--plan", metavar="FILE", type=path_text,
                        help="run nothing here: write FILE, one command line per (strategy, "
                             "seed) doing its search and its scoring, for a scheduler; once "
                             "FILE exists, tabulate what finished and list what has not")
    parser.add_argument("--launch", default="nasp", metavar="PREFIX",
                        help="how a plan line starts nasp, e.g. 'torchrun --nproc-per-node 8 "
                             "-m nasp' (default: %(default)s)")
    add_config_options(parser, SearchConfig, skip=("strategy", "seed", "out"))


def run(args: argparse.Namespace) -> int:
    import shlex

    from nasp.cli import CURRENT_ARGV
    from nasp.compare import compare
    from nasp.viz.tables import to_markdown

    options = given_options(args, SearchConfig)
    options.pop("out", None)  # --out is the compare's folder, not a run's
    rows = compare(args.strategies, args.seeds, args.out, score_epochs=args.score_epochs,
                   config=args.config, overwrite=args.overwrite, progress=not args.quiet,
                   isolate=not args.in_process, jobs=args.jobs,
                   command=shlex.join(["nasp", *CURRENT_ARGV]), plan=args.plan,
                   launch=args.launch, **options)
    if rows:
        print(to_markdown(rows), end="")
    return 0
