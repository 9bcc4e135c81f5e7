"""``nasp info``: how big a genotype's evaluation network is, before spending time training it.

For CNN genotypes: parameters (auxiliary head excluded, as papers report them) and
multiply-adds of one image, for the shape of ``--data`` (default 3x32x32, 10 classes) at the
paper's size (20 cells, C=36; 14 cells, C=48 for 64x64 data); with ``--latency`` or
``--cost-table`` also the measured inference latency and the table's prediction
(``nasp.cli.info_latency``). For NAS-Bench-201 cells (a cell string or an nb201 genotype): the
benchmark's network (15 cells, C=16) and the cell's 200-epoch test accuracy on the benchmark's
three datasets. For recurrent genotypes (``--task lm``): parameters of the language model at
the paper's size.
"""

from __future__ import annotations

import argparse

from nasp.cli import info_latency
from nasp.cli.options import path_text
from nasp.errors import NaspError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--genotype", type=path_text,
                       help="a published name (DARTS_V1, DARTS_V2, NASP_12), a genotype.json, "
                       "a search run folder, or a NAS-Bench-201 cell string "
                       "('|nor_conv_3x3~0|+|...|')")
    which.add_argument("--arch", metavar="RUN", type=path_text,
                       help="a search of your own model (nasp search --space FILE.py:FUNCTION): "
                       "its architecture, and the size of its fixed network for the search's "
                       "data (or --data)")
    parser.add_argument("--task", choices=("cnn", "lm"), default=None,
                        help="cnn or lm (default: cnn, or the task of the genotype file)")
    parser.add_argument("--data", default=None,
                        help="dataset whose image shape and classes to use "
                        "(default: 3x32x32 images, 10 classes)")
    parser.add_argument("--data-root", default=None, type=path_text,
                        help="folder of the dataset's files, needed only for datasets without a "
                        "fixed shape (folder)")
    parser.add_argument("--layers", type=int, default=None,
                        help="cells (default 20; 14 for 64x64 data)")
    parser.add_argument("--channels", type=int, default=None,
                        help="initial channels C (default 36; 48 for 64x64 data)")
    parser.add_argument("--ntokens", type=int, default=10000,
                        help="vocabulary size for --task lm (default 10000, PTB)")
    parser.add_argument("--emsize", type=int, default=850,
                        help="embedding size for --task lm (default 850)")
    parser.add_argument("--nhid", type=int, default=850,
                        help="hidden size for --task lm (default 850)")
    parser.add_argument("--device-latency", metavar="DEVICE", default=None,
                        help="NAS-Bench-201 cells: the cell's measured latency on DEVICE from "
                        "the shipped table (27 devices, e.g. raspi4, pixel2, gold_6226, "
                        "titan_rtx_256), or 'all'")
    info_latency.add_arguments(parser)


def lm_params(genotype, ntokens: int = 10000, emsize: int = 850, nhid: int = 850) -> int:
    """Parameters of the recurrent language model (``nasp.models.rnn``, imported lazily)."""
    try:
        from nasp.models.rnn import count_lm_params
    except ImportError:
        raise NaspError("language-model networks are not available in this build "
                        "(nasp.models.rnn is missing)", "use --task cnn") from None
    return int(count_lm_params(genotype, ntokens=ntokens, emsize=emsize, nhid=nhid))


def cnn_info(genotype, shape: tuple[int, int, int, int], layers: int | None,
             channels: int | None) -> dict:
    """Sizes of the evaluation network for (channels, height, width, classes) ``shape``."""
    from nasp.models.cnn import build_eval_model, count_flops, count_params

    c, h, w, classes = shape
    if genotype.family == "nb201":  # the benchmark's network: its own size, no auxiliary head
        net = build_eval_model(genotype, c, classes, (h, w), channels=channels, layers=layers)
        n = count_params(net)
        return {"layers": 3 * net.cells_per_stage, "channels": net.channels, "params": n,
                "params_with_aux": n, "flops": count_flops(net, (c, h, w))}
    big = max(h, w) >= 64
    layers = layers if layers is not None else (14 if big else 20)
    channels = channels if channels is not None else (48 if big else 36)
    net = build_eval_model(genotype, c, classes, (h, w), channels=channels, layers=layers,
                           auxiliary=True)
    return {"layers": layers, "channels": channels, "params": count_params(net),
            "params_with_aux": count_params(net, exclude_auxiliary=False),
            "flops": count_flops(net, (c, h, w))}


def own_info(args: argparse.Namespace) -> int:
    """``--arch RUN``: the fixed network of a search of the user's model."""
    import torch

    from nasp.configs.train_cnn import dataset_shape
    from nasp.models.cnn import count_flops, count_params
    from nasp.models.fixed import fix
    from nasp.spaces.model import build_model, read_own_search

    for name in ("task", "layers", "channels"):
        if getattr(args, name) is not None:
            raise NaspError(f"--{name.replace('_', '-')} does not apply to --arch",
                            "leave it out: your model's function fixes its size")
    space, arch, config = read_own_search(args.arch)
    data = args.data or config["data"]
    root = args.data_root if args.data else config.get("data_root")
    c, h, w, classes = dataset_shape(data, root)
    net = fix(build_model(space, c, classes), arch)
    print(f"arch: {arch}")
    print(f"network: {space} for {data}: {c}x{h}x{w} images, {classes} classes")
    print(f"parameters: {count_params(net) / 1e6:.3f} M")
    print(f"multiply-adds: {count_flops(net, (c, h, w)) / 1e6:.1f} M per image")
    if args.latency or args.cost_table:
        from nasp.cli.info_latency import measured_line
        from nasp.device import resolve_device

        table = None
        if args.cost_table:
            from nasp.costs import load_table

            table = load_table(args.cost_table)
            args.threads = args.threads or table["device"]["threads"]
            args.clock = args.clock or table.get("clock", "wall")
        if args.threads:
            torch.set_num_threads(args.threads)
        print(measured_line(net, (c, h, w), resolve_device(args.device or "cpu"), args,
                            table["batch_size"] if table else None))
        if table is not None:
            from nasp.costs import predict_model
            from nasp.supernet.choices import attach

            pred = predict_model(table, attach(build_model(space, c, classes)), arch, "latency")
            print(f"cost table {args.cost_table} ({table['device']['type']}, "
                  f"{table['device']['threads']} thread(s), {table.get('clock', 'wall')} "
                  f"clock): predicts {pred:.3f} ms at batch {table['batch_size']}")
    return 0


def check_args(args: argparse.Namespace) -> None:
    """Every number and name of the command line, before anything is built or printed."""
    checks = [(args.layers is None or args.layers >= 3, "layers", "use --layers 3 or more"),
              (args.channels is None or (args.channels >= 2 and args.channels % 2 == 0),
               "channels", "use an even --channels >= 2"),
              (args.ntokens >= 1, "ntokens", "use --ntokens 1 or more"),
              (args.emsize >= 1, "emsize", "use --emsize 1 or more"),
              (args.nhid >= 1, "nhid", "use --nhid 1 or more")]
    for ok, name, hint in checks:
        if not ok:
            raise NaspError(f"invalid {name}: {getattr(args, name)}", hint)
    info_latency.check_args(args)


def _check_device_latency(value: str | None) -> tuple[str, ...]:
    """The devices ``--device-latency`` names (all 27 for "all"); checked before any work."""
    if value is None:
        return ()
    from nasp.nb201.latency import DEVICES, check_device

    return DEVICES if value == "all" else (check_device(value),)


def device_latency_lines(genotype, devices: tuple[str, ...]) -> list[str]:
    """The cell's measured latencies from the shipped table (HELP, HW-NAS-Bench)."""
    if not devices:
        return []
    from nasp.nb201.latency import device_latencies

    ms = device_latencies(genotype)
    head = ("measured latency of the benchmark's network (C=16, 5 cells per stage, CIFAR "
            "input) with this cell, shipped table (HELP / HW-NAS-Bench):")
    return [head] + [f"  {d:<15}{ms[d]:>10.3f} ms" for d in devices]


def run(args: argparse.Namespace) -> int:
    from nasp.genotype import GENOTYPES, get_genotype

    check_args(args)
    if args.arch is not None:
        return own_info(args)
    task = args.task
    if task is None:
        task = "cnn" if args.genotype in GENOTYPES["cnn"] or args.genotype in GENOTYPES["lm"] \
            else get_genotype(args.genotype, "cnn").task
    device_latency = _check_device_latency(args.device_latency)
    genotype = get_genotype(args.genotype, task)
    if device_latency and genotype.family != "nb201":
        raise NaspError("--device-latency is for NAS-Bench-201 cells (the shipped table "
                        "measures the benchmark's network)",
                        "pass a cell string '|op~0|+|...|' or an nb201 genotype")
    if genotype.task != task:
        raise NaspError(f"genotype {args.genotype!r} is a {genotype.task} genotype, not {task}",
                        f"use --task {genotype.task}")
    if task == "lm":
        if info_latency.wanted(args):
            raise NaspError("--latency and --cost-table are for CNN genotypes",
                            "leave them out with --task lm")
        n = lm_params(genotype, args.ntokens, args.emsize, args.nhid)
        print(f"genotype: {genotype}")
        print(f"language model: emsize {args.emsize}, nhid {args.nhid}, "
              f"{args.ntokens} tokens")
        print(f"parameters: {n / 1e6:.3f} M")
        return 0
    table, table_shape = info_latency.table_network(args)
    if table_shape is not None:
        shape = table_shape
        source = f"the cost table's {shape[0]}x{shape[1]}x{shape[2]} images, {shape[3]} classes"
    elif args.data is None:
        shape = (3, 32, 32, 10)
        source = "3x32x32 images, 10 classes"
    else:
        from nasp.configs.train_cnn import dataset_shape

        shape = dataset_shape(args.data, args.data_root)
        source = f"{args.data}: {shape[0]}x{shape[1]}x{shape[2]} images, {shape[3]} classes"
    info = cnn_info(genotype, shape, args.layers, args.channels)
    if table is not None:  # before the first line: a mismatch prints nothing
        info_latency.check_table_network(table, shape, info["layers"], info["channels"])
    print(f"genotype: {genotype}")
    print(f"network: {info['layers']} cells, C={info['channels']}, {source}")
    if genotype.family == "nb201":
        print(f"parameters: {info['params'] / 1e6:.3f} M")
    else:
        print(f"parameters: {info['params'] / 1e6:.3f} M (auxiliary head excluded; "
              f"{info['params_with_aux'] / 1e6:.3f} M with it)")
    print(f"multiply-adds: {info['flops'] / 1e6:.1f} M per image")
    if genotype.family == "nb201":
        from nasp.nb201 import index_of, lookup

        acc = lookup(genotype)
        print(f"NAS-Bench-201 cell {index_of(genotype)}: {genotype.arch_str}")
        print(f"benchmark test accuracy (200 epochs, the benchmark's network and data): "
              f"CIFAR-10 {acc['cifar10_test']:.2f}%, CIFAR-100 {acc['cifar100_test']:.2f}%, "
              f"ImageNet16-120 {acc['imagenet16_test']:.2f}%")
        for line in device_latency_lines(genotype, device_latency):
            print(line)
    for line in info_latency.fitted_lines(genotype, args):
        print(line)
    if info_latency.wanted(args):
        for line in info_latency.lines(genotype, shape, info["layers"], info["channels"], args,
                                       table, info):
            print(line)
    return 0
