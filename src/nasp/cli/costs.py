"""``nasp costs fit``: a latency table for a device from a few measured networks.

A subcommand of its own rather than of ``nasp profile``: profile measures ops on this machine
(torch, a network, a device), fit reads measurements made anywhere (the shipped NAS-Bench-201
table, or a CSV the user timed on their phone) and needs no device at all. Both write a cost
file that ``nasp search --cost-table`` and ``--latency-target`` read.

The fit (``nasp.cost_fit``): least squares over the (cell position, op) pairs each measured
network runs, plus a constant; dead ends handled by the rule the data prefer. It reports on the
networks it did not see: the rest of the shipped table, or, for a CSV, each row left out in
turn; Kendall's τ and the mean absolute percentage error, and the τ of multiply-adds.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="costs_command", metavar="ACTION")
    fit = sub.add_parser("fit", help="fit a per-(cell position, op) latency table",
                         description="Fit a latency table for a device (a cost per cell "
                         "position and op, plus a constant) from measured networks.")
    fit.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    src = fit.add_mutually_exclusive_group()
    src.add_argument("--device-latency", metavar="DEVICE",
                     help="measurements from the shipped NAS-Bench-201 table on DEVICE "
                     "(27 devices, e.g. pixel2, gold_6226, fpga)")
    src.add_argument("--csv", type=Path, metavar="FILE",
                     help="your own measurements: rows 'genotype,latency_ms' (a cell string, "
                     "a genotype.json or a published name; a header line is allowed)")
    fit.add_argument("--space", default=None,
                     help="search space of the networks (default: nb201; with --csv, the "
                     "space of the first row's genotype)")
    fit.add_argument("--samples", default=None, metavar="N",
                     help="with --device-latency: fit on N random cells, or 'all' (default: "
                     "100); the other cells are held out and scored")
    fit.add_argument("--seed", type=int, default=0, help="which random cells (default: 0)")
    fit.add_argument("--dead-ends", choices=("auto", "free", "cost"), default="auto",
                     help="whether ops that cannot reach the cell output cost anything: free, "
                     "cost, or auto: the rule with the lower leave-one-out error (default)")
    fit.add_argument("-o", "--out", type=Path, default=Path("costs-fit.json"),
                     help="the cost file to write (default: costs-fit.json)")


def run(args: argparse.Namespace) -> int:
    from nasp.errors import NaspError

    if args.costs_command != "fit":
        raise NaspError("nasp costs needs an action", "use nasp costs fit --help")
    if not args.device_latency and args.csv is None:
        raise NaspError("nothing to fit from", "give --device-latency DEVICE (the shipped "
                        "NAS-Bench-201 table) or --csv FILE (your measurements)")
    if args.csv is not None and args.samples is not None:
        raise NaspError("--samples picks cells of the shipped table", "leave it out with --csv")
    from nasp.configs.base import MAX_SEED
    from nasp.files import check_output

    if not 0 <= args.seed <= MAX_SEED:
        raise NaspError(f"invalid seed: {args.seed}", f"use --seed between 0 and {MAX_SEED}")
    check_output(args.out, "-o")  # before the fit, not after it
    report = from_table(args) if args.device_latency else from_csv(args)
    from nasp.files import output_errors

    with output_errors(args.out.parent):
        report["model"].save(args.out)
    for line in report["lines"]:
        print(line)
    print(f"-> {args.out}")
    return 0


def _check_space(name: str | None, default: str) -> Any:
    from nasp.spaces import get_space

    space = get_space(name or default)
    if space.task != "cnn":
        from nasp.errors import NaspError

        raise NaspError(f"space {space.name!r} has no network latency to fit",
                        "use a CNN space (nb201, darts, nasp-7, nasp-12)")
    return space


def from_table(args: argparse.Namespace) -> dict[str, Any]:
    from nasp.cost_fit import (
        evaluate,
        fit,
        nb201_madds,
        nb201_selection,
        predict_many,
        sample_table,
    )
    from nasp.errors import NaspError
    from nasp.nb201.latency import check_device, latency_table

    check_device(args.device_latency)
    space = _check_space(args.space, "nb201")
    if space.name != "nb201":
        raise NaspError(f"the shipped latency table measures NAS-Bench-201 cells, not space "
                        f"{space.name!r}", "use --space nb201, or --csv with your measurements")
    table = latency_table()
    samples: int | str | None = 100 if args.samples is None else args.samples
    if samples == "all":
        samples = len(table)
    try:
        samples = int(samples)
    except ValueError:
        raise NaspError(f"invalid --samples {args.samples!r}",
                        "give a number of cells, e.g. --samples 100, or --samples all") from None
    sample_table(args.device_latency, samples, args.seed)  # checks N before any work
    if samples == len(table):
        samples = None  # every cell: nothing held out
    fitted, held = sample_table(args.device_latency, samples, args.seed)
    y = table.column(args.device_latency)
    sels = [nb201_selection(a) for a in table.archs]
    cells = dict(space.cells)
    result = fit([sels[i] for i in fitted], y[fitted], space.name, cells, args.dead_ends,
                 {"source": f"NAS-Bench-201 table, device {args.device_latency}",
                  "device": args.device_latency, "seed": args.seed})
    model = result.model
    lines = _fit_lines(result, f"{len(fitted)} cells of the shipped table measured on "
                       f"{args.device_latency} (seed {args.seed})")
    if len(held):
        pred = predict_many(model, [sels[i] for i in held], cells)
        ev = evaluate(pred, y[held], nb201_madds([table.archs[i] for i in held]))
        model.fit["heldout"] = ev
        lines += _eval_lines(ev, f"the other {len(held)} cells of the table")
    lines += _table_lines(model, cells)
    return {"model": model, "lines": lines}


def from_csv(args: argparse.Namespace) -> dict[str, Any]:
    from nasp.cost_fit import evaluate, fit, read_measurements
    from nasp.cost_model import selections_of
    from nasp.errors import NaspError

    genotypes, latencies = read_measurements(args.csv)
    default = "nb201" if genotypes[0].family == "nb201" else "nasp-7"
    space = _check_space(args.space, default)
    cells = dict(space.cells)
    try:
        sels = selections_of(genotypes, cells)
    except NaspError as e:
        raise NaspError(f"{args.csv}: a genotype does not fit space {space.name!r} "
                        f"({e.message})", "give --space of your genotypes") from None
    result = fit(sels, latencies, space.name, cells, args.dead_ends,
                 {"source": f"measurements in {args.csv.name}"})
    lines = _fit_lines(result, f"{len(latencies)} networks measured in {args.csv}")
    ev = evaluate(result.loo_pred, latencies, network_madds(genotypes))
    result.model.fit["leave_one_out"] = ev
    lines += _eval_lines(ev, "each measured network, left out of the fit in turn")
    lines += _table_lines(result.model, cells)
    return {"model": result.model, "lines": lines}


def network_madds(genotypes: list[Any]) -> list[float]:
    """Multiply-adds per image of each genotype's evaluation network as ``nasp info`` counts
    them (3x32x32 images, 10 classes, the family's default size)."""
    from nasp.cost_fit import nb201_madds
    from nasp.models.cnn import build_eval_model, count_flops

    if all(g.family == "nb201" for g in genotypes):
        return list(nb201_madds([g.arch_str for g in genotypes]))
    return [float(count_flops(build_eval_model(g, 3, 10, 32), (3, 32, 32))) for g in genotypes]


def _fit_lines(result: Any, what: str) -> list[str]:
    m = result.model
    how = "chosen by leave-one-out error" if m.fit.get("dead_ends_rule") == "auto" \
        else "as given"
    return [f"fitted on {what}",
            f"  dead ends: {m.dead_ends} ({how}); "
            f"sharing between positions ρ = {result.rho:g}; constant {m.constant:.3f} ms",
            f"  on the fitted cells: R² {result.r2:.6f}, leave-one-out RMSE "
            f"{result.loo_rmse:.4f} ms"]


def _eval_lines(ev: dict[str, Any], what: str) -> list[str]:
    return [f"on {what}:",
            f"  Kendall τ {ev['kendall_tau']:.3f}, mean absolute error {ev['mape_pct']:.2f}%; "
            f"multiply-adds' Kendall τ {ev.get('flops_kendall_tau', float('nan')):.3f} (the "
            "proxy without a table)"]


def _table_lines(model: Any, cells: dict) -> list[str]:
    out = []
    for name, cell in cells.items():
        ops = [k for k in range(cell.num_ops) if cell.ops[k] != "none"]
        out.append(f"{'the' if name == 'cell' else name} cell, ms per op (rows: edges node<-input)")
        out.append(" " * 10 + "".join(f"{cell.ops[k][:13]:>14}" for k in ops))
        for e, (node, j) in enumerate(cell.edges):
            out.append(f"  {node + cell.inputs}<-{j:<5}" + "".join(
                f"{model.cost[name][e, k]:>14.4f}" for k in ops))
    return out
