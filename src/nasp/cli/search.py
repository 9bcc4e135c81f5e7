"""``nasp search``: find a cell architecture (NASP by default) and write a run folder."""

from __future__ import annotations

import argparse
from typing import Any

from nasp.cli.options import (
    add_config_options,
    given_options,
    path_text,
    refuse_contradictions,
)
from nasp.configs import SearchConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=path_text,
                        help="JSON file of options (a run's config.json works); "
                        "command-line options override it")
    parser.add_argument("--resume", metavar="RUN", type=path_text,
                        help="continue the search in run folder RUN (options that cannot change "
                        "finished epochs may be given with it)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing run in --out")
    parser.add_argument("--continue", dest="continue_run", action="store_true",
                        help="run the search at most once: keep a finished run in --out, "
                             "resume an interrupted one (made with the same options), start "
                             "a missing one; for schedulers that re-run jobs")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    add_config_options(parser, SearchConfig)


def run(args: argparse.Namespace) -> int:
    from nasp import api
    from nasp.distributed import is_main_process

    options = given_options(args, SearchConfig)
    refuse_contradictions(args)
    if args.continue_run:
        result, how = api.search_or_continue(args.config, progress=not args.quiet, **options)
        if is_main_process():
            key = "arch" if "arch" in result else "genotype"
            print(f"{how}: {key} {result[key]}")
            for line in benchmark_lines(result):
                print(line)
        return 0
    if args.resume:
        res = api.resume(args.resume, progress=not args.quiet, command="search",
                         config=args.config, **options)
    else:
        res = api.search(config=args.config, overwrite=args.overwrite, progress=not args.quiet,
                         **options)
    if not is_main_process():  # under torchrun every rank has the result; one prints it
        return 0
    record = "arch" if res.arch is not None else "genotype"  # a user model's, or a cell's
    print(f"{record}: {res.genotype}")
    for line in benchmark_lines(res.result):
        print(line)
    if res.run_dir is not None:
        print(f"run folder: {res.run_dir}  ({record}.json, metrics.jsonl, arch.jsonl, "
              "checkpoint.pt, result.json)")
    return 0


def benchmark_lines(result: dict[str, Any]) -> list[str]:
    """NAS-Bench-201's ground truth of the found cell, with what it is and is not: the
    benchmark's own 200-epoch accuracies on its datasets, not a score of this search's data
    (a search on the bundled Fashion-MNIST sample still shows CIFAR numbers)."""
    keys = (("nb201_cifar10_test", "CIFAR-10"), ("nb201_cifar100_test", "CIFAR-100"),
            ("nb201_imagenet16_test", "ImageNet16-120"))
    shown = [f"{name} {result[k]:.2f}%" for k, name in keys
             if isinstance(result.get(k), int | float)]
    lines = budget_lines(result)
    if not shown:
        return lines
    from nasp.nb201.table import NOTE

    lines = [f"NAS-Bench-201 ground truth of this cell: {', '.join(shown)}",
             f"  ({result.get('nb201_note') or NOTE})"] + lines
    if isinstance(result.get("nb201_latency_ms"), int | float):
        lines.append(f"measured latency of this cell on {result.get('target_device')} "
                     f"(shipped table): {result['nb201_latency_ms']:.3f} ms")
    return lines


def budget_lines(result: dict[str, Any]) -> list[str]:
    """Whether the found architecture meets the latency budget, by its predicted latency."""
    target, pred = result.get("latency_target_ms"), result.get("latency_pred_ms")
    if not isinstance(target, int | float) or not isinstance(pred, int | float):
        return []
    aim = result.get("latency_aim_ms")
    aiming = f", aiming at {aim:.3f} ms" if isinstance(aim, float) and aim < target else ""
    if result.get("latency_met"):
        return [f"latency budget {target:g} ms: met, {pred:.3f} ms predicted{aiming}"]
    return [f"latency budget {target:g} ms: NOT met, {pred:.3f} ms predicted, "
            f"{pred - target:.3f} ms over (the closest architecture the search could reach)"]
