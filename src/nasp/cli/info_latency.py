"""The latency part of ``nasp info``: measured inference latency of a genotype's evaluation
network, beside what a cost table (``nasp profile``) predicts for it by addition."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nasp.cli.options import path_text
from nasp.errors import NaspError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("latency (CNN genotypes)")
    g.add_argument("--latency", action="store_true",
                   help="measure the network's inference latency at batch 1 and --batch-size")
    g.add_argument("--cost-table", default=None, type=path_text,
                   help="a `nasp profile` JSON: print the latency (and sizes) it predicts beside "
                   "the measured ones; implies --latency. The network, device, threads and "
                   "clock default to the table's")
    g.add_argument("--device", default=None, help="device to time on (default: cpu)")
    g.add_argument("--batch-size", type=int, default=32,
                   help="the larger batch to time (default: 32)")
    g.add_argument("--threads", type=int, default=None,
                   help="CPU threads while timing (default: torch's setting)")
    g.add_argument("--clock", choices=("wall", "cpu"), default=None,
                   help="wall (default) or cpu: process CPU time (see nasp profile --help)")
    g.add_argument("--repeats", type=int, default=20,
                   help="timed repeats; the median is kept (default: 20)")


def _threads(n: int) -> str:
    return f"{n} thread" + ("" if n == 1 else "s")


def wanted(args: argparse.Namespace) -> bool:
    return bool(args.latency or (args.cost_table and not fitted(args)))


def fitted(args: argparse.Namespace) -> bool:
    """Whether --cost-table is a fitted model (``nasp costs fit``), not a profile."""
    if not args.cost_table or not Path(args.cost_table).is_file():
        return False
    from nasp.cost_model import MODEL_FORMAT
    from nasp.run_folder import read_json

    raw = read_json(Path(args.cost_table))
    return isinstance(raw, dict) and raw.get("format") == MODEL_FORMAT


def fitted_lines(genotype: Any, args: argparse.Namespace) -> list[str]:
    """What a fitted table (``nasp costs fit``) predicts for the genotype."""
    if not fitted(args):
        return []
    from nasp.cost_model import fit_note, load_cost_model

    model = load_cost_model(args.cost_table)
    return [f"cost table {args.cost_table} ({fit_note(model)}; dead ends {model.dead_ends}): "
            f"predicts {model.predict(genotype):.3f} {model.unit}"]


def check_args(args: argparse.Namespace) -> None:
    """The latency options, checked before anything is built, timed or printed."""
    for ok, name, hint in ((args.repeats >= 1, "repeats", "use --repeats 1 or more"),
                           (args.batch_size >= 1, "batch_size", "use --batch-size 1 or more"),
                           (args.threads is None or args.threads >= 1, "threads",
                            "use --threads 1 or more (leave it out for torch's setting)")):
        if not ok:
            raise NaspError(f"invalid {name}: {getattr(args, name)}", hint)
    if args.device is not None and wanted(args):
        from nasp.device import resolve_device

        resolve_device(args.device)


def check_table_network(table: dict[str, Any], shape: tuple[int, int, int, int], layers: int,
                        channels: int) -> None:
    """The network a cost table was measured on is the one asked about."""
    c, h, w, classes = shape
    net_info = table["network"]
    if (list(net_info["input_shape"]), net_info["num_classes"], net_info["layers"],
            net_info["channels"]) != ([c, h, w], classes, layers, channels):
        raise NaspError(f"the cost table was measured on a {net_info['layers']}-cell "
                        f"C={net_info['channels']} network for "
                        f"{'x'.join(map(str, net_info['input_shape']))} images",
                        "leave out --data/--layers/--channels to use the table's network, or "
                        "profile this network")


def table_network(args: argparse.Namespace) -> tuple[dict[str, Any] | None,
                                                       tuple[int, int, int, int] | None]:
    """The cost table, and the (C, H, W, classes) of its network when --data is not given;
    --layers and --channels default to the table's."""
    if not args.cost_table:
        return None, None
    from nasp.cost_model import MODEL_FORMAT
    from nasp.costs import load_table
    from nasp.run_folder import read_json

    raw = read_json(Path(args.cost_table)) if Path(args.cost_table).is_file() else None
    if isinstance(raw, dict) and raw.get("format") == MODEL_FORMAT:
        return None, None  # a fitted model predicts the benchmark's network: fitted_lines
    table = load_table(args.cost_table)
    net = table["network"]
    args.layers = args.layers if args.layers is not None else net["layers"]
    args.channels = args.channels if args.channels is not None else net["channels"]
    shape = None if args.data else (*net["input_shape"], net["num_classes"])
    return table, shape


def _measure(net: Any, shape: tuple[int, int, int], batches: list[int], device: Any,
             repeats: int, clock: str) -> dict[int, float]:
    """Median latency (ms) of ``net`` per batch size, on seeded inputs."""
    import torch

    from nasp.latency import modules_latency

    gen = torch.Generator().manual_seed(0)
    timings = modules_latency([(net, (torch.randn(b, *shape, generator=gen),))
                               for b in batches], device, repeats=repeats, clock=clock)
    return {b: t.ms for b, t in zip(batches, timings)}


def _measured_text(measured: dict[int, float], device: Any, clock: str, repeats: int) -> str:
    import torch

    return (f"latency on {device} ({_threads(torch.get_num_threads())}, {clock} clock, median "
            f"of {repeats}): " + "; ".join(f"batch {b}: {ms:.3f} ms"
                                           for b, ms in measured.items()))


def measured_line(net: Any, shape: tuple[int, int, int], device: Any,
                  args: argparse.Namespace, extra: int | None = None) -> str:
    """The measured-latency line of any network (a user model's fixed one), at batch 1,
    ``--batch-size`` and ``extra`` (a cost table's batch); ``check_args`` checked them."""
    clock = args.clock or "wall"
    batches = sorted({1, args.batch_size} | ({extra} if extra else set()))
    measured = _measure(net, shape, batches, device, args.repeats, clock)
    return _measured_text(measured, device, clock, args.repeats)


def lines(genotype: Any, shape: tuple[int, int, int, int], layers: int, channels: int,
          args: argparse.Namespace, table: dict[str, Any] | None, sizes: dict[str, int]
          ) -> list[str]:
    """Measured latency (and the table's predictions) as printable lines."""
    import torch

    from nasp.costs import predict
    from nasp.device import resolve_device
    from nasp.models.cnn import build_eval_model

    device_name = args.device or (table["device"]["type"] if table else "cpu")
    clock = args.clock or (table.get("clock", "wall") if table else "wall")
    threads = args.threads or (table["device"]["threads"] if table else None)
    if threads:
        torch.set_num_threads(threads)
    device = resolve_device(device_name)
    batches = sorted({1, args.batch_size} | ({table["batch_size"]} if table else set()))
    c, h, w, classes = shape
    net = build_eval_model(genotype, c, classes, (h, w), channels=channels, layers=layers)
    measured = _measure(net, (c, h, w), batches, device, args.repeats, clock)
    out = [_measured_text(measured, device, clock, args.repeats)]
    if table is None:
        return out
    check_table_network(table, shape, layers, channels)
    b = table["batch_size"]
    pred = predict(table, genotype, "latency")
    err = 100.0 * (pred - measured[b]) / measured[b]
    params, madds = predict(table, genotype, "params"), predict(table, genotype, "madds")
    same = "matches" if (params, madds) == (sizes["params"], sizes["flops"]) else "differs from"
    out.append(f"cost table {args.cost_table} ({table['device']['type']}, "
               f"{_threads(table['device']['threads'])}, {table.get('clock', 'wall')} clock): "
               f"predicts {pred:.3f} ms at batch {b} ({err:+.1f}% of measured); "
               f"{params / 1e6:.3f} M parameters, {madds / 1e6:.1f} M multiply-adds "
               f"({same} the network's count)")
    target = _run_target(args.genotype)
    if target is not None:
        ok = measured[b] <= target
        out.append(f"the search's latency budget {target:g} ms: measured {measured[b]:.3f} ms at "
                   f"batch {b}, " + ("met" if ok else f"{measured[b] - target:.3f} ms over"))
    return out


def _run_target(genotype: str) -> float | None:
    """The ``--latency-target`` of the search run folder ``genotype`` names, if any."""
    result = Path(genotype) / "result.json"
    if not result.is_file():
        return None
    from nasp.run_folder import read_json

    target = read_json(result).get("latency_target_ms")
    return float(target) if isinstance(target, int | float) else None
