"""``nasp profile``: the cost table of a search space on this device (see ``nasp.costs``).

Every candidate op of ``--space`` is built at every position of the evaluation network that
``nasp train`` would build for ``--data`` (``--preset``'s cells and channels unless
``--layers``/``--channels`` are given) and measured: latency (warm-up, median of repeats, at
``--batch-size``), parameters and multiply-adds. ``nasp search --cost-table`` and ``nasp info
--cost-table`` read the JSON file it writes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from nasp.cli.options import path_arg, path_text


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="nasp-7", help="search space (default: nasp-7), "
                        "or your own model: FILE.py:FUNCTION (every candidate of every Choice "
                        "is timed on the inputs it receives in the model)")
    parser.add_argument("--data", default="fashion-mnist-sample",
                        help="dataset whose image shape and classes the network takes "
                        "(default: fashion-mnist-sample)")
    parser.add_argument("--data-root", default=None, type=path_text,
                        help="folder of the dataset's files, for datasets without a fixed shape")
    parser.add_argument("--preset", default="quick",
                        help="train preset whose cells and channels to use (default: quick)")
    parser.add_argument("--layers", type=int, default=None, help="cells (default: the preset's)")
    parser.add_argument("--channels", type=int, default=None,
                        help="initial channels C (default: the preset's)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=1,
                        help="images per timed call (default: 1)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads while timing (default: torch's setting)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed calls first (default: 5)")
    parser.add_argument("--repeats", type=int, default=20,
                        help="timed repeats; the median is kept (default: 20)")
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="wall: elapsed time (default); cpu: process CPU time, steadier on a "
                        "busy machine, equal to latency with --threads 1 on an idle one")
    parser.add_argument("-o", "--out", type=path_arg, default=Path("costs.json"),
                        help="output JSON (default: costs.json)")


def network_size(data: str, data_root: str | None, preset: str, layers: int | None,
                 channels: int | None, family: str = "darts"
                 ) -> tuple[tuple[int, int, int, int], int, int]:
    """(C, H, W, classes), layers and channels of the network ``nasp train`` would build (for
    a NAS-Bench-201 cell: the benchmark's network, its quick preset one cell per stage)."""
    from nasp.configs import TrainConfig
    from nasp.configs.train_cnn import dataset_shape

    shape = dataset_shape(data, data_root)
    layered = {"preset": preset, "data": data, "data_root": data_root}
    if family == "nb201":  # any cell string: the preset follows the family
        layered["genotype"] = "|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"
    values = TrainConfig.preset_values(layered)
    return shape, layers or values["layers"], channels or values["channels"]


def check_args(args: argparse.Namespace) -> None:
    """Every option, and the output file, before any op is timed (which takes minutes)."""
    from nasp.errors import NaspError
    from nasp.files import check_output

    checks = [(args.threads is None or args.threads >= 1, "threads",
               "use --threads 1 or more (leave it out for torch's setting)"),
              (args.batch_size >= 1, "batch_size", "use --batch-size 1 or more"),
              (args.warmup >= 0, "warmup", "use --warmup 0 or more"),
              (args.repeats >= 1, "repeats", "use --repeats 1 or more"),
              (args.layers is None or args.layers >= 3, "layers", "use --layers 3 or more"),
              (args.channels is None or (args.channels >= 2 and args.channels % 2 == 0),
               "channels", "use an even --channels >= 2")]
    for ok, name, hint in checks:
        if not ok:
            raise NaspError(f"invalid {name}: {getattr(args, name)}", hint)
    if args.data_root is not None and Path(args.data_root).is_file():
        raise NaspError(f"invalid data_root: {args.data_root!r}",
                        "give --data-root the dataset's folder")
    check_output(args.out, "-o")


def run(args: argparse.Namespace) -> int:
    import torch

    from nasp.costs import profile, save_table
    from nasp.device import resolve_device
    from nasp.spaces import get_space
    from nasp.spaces.model import is_model_ref

    check_args(args)
    device = resolve_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if is_model_ref(args.space):
        return _profile_model(args, device)
    space = get_space(args.space)
    (c, h, w, classes), layers, channels = network_size(args.data, args.data_root, args.preset,
                                                        args.layers, args.channels, space.family)
    start = time.perf_counter()
    table = profile(space, (c, h, w), classes, channels, layers, device, args.batch_size,
                    args.warmup, args.repeats, data=args.data, clock=args.clock,
                    progress=lambda what: print(what, file=sys.stderr))
    save_table(table, args.out)
    n_ops = sum(len(p["ops"]) for p in table["positions"])
    threads = table["device"]["threads"]
    print(f"{args.space} on {device} ({threads} thread{'' if threads == 1 else 's'}), batch "
          f"{args.batch_size}: {n_ops} ops at {len(table['positions'])} positions of a "
          f"{layers}-cell C={channels} network for {c}x{h}x{w} images "
          f"({time.perf_counter() - start:.1f} s) -> {args.out}")
    print(f"{'cell':<7}{'stride':>7}{'C':>5}{'size':>8}  latency ms per op (median)")
    for p in table["positions"]:
        size = "x".join(str(s) for s in p["input_size"])
        ops = ", ".join(f"{op} {v['latency_ms']:.3f}" for op, v in p["ops"].items())
        print(f"{p['cell_type']:<7}{p['stride']:>7}{p['channels']:>5}{size:>8}  {ops}")
    return 0


def _profile_model(args: argparse.Namespace, device) -> int:  # noqa: ANN001 - torch.device
    """``--space FILE.py:FUNCTION``: the candidates of the user's model where they sit."""
    from nasp.configs.train_cnn import dataset_shape
    from nasp.costs import profile_model, save_table

    for name in ("layers", "channels"):
        if getattr(args, name) is not None:
            from nasp.errors import NaspError

            raise NaspError(f"--{name} does not apply to your own model",
                            "leave it out: the model's function fixes its size")
    c, h, w, classes = dataset_shape(args.data, args.data_root)
    start = time.perf_counter()
    table = profile_model(args.space, (c, h, w), classes, device, args.batch_size, args.warmup,
                          args.repeats, data=args.data, clock=args.clock,
                          progress=lambda what: print(what, file=sys.stderr))
    save_table(table, args.out)
    threads = table["device"]["threads"]
    print(f"{args.space} on {device} ({threads} thread{'' if threads == 1 else 's'}), batch "
          f"{args.batch_size}, {c}x{h}x{w} images: {len(table['choices'])} choices "
          f"({time.perf_counter() - start:.1f} s) -> {args.out}")
    print(f"skeleton (the rest of the network) {table['fixed'][0]['latency_ms']:.3f} ms")
    for label, cands in table["choices"].items():
        shown = ", ".join(f"{name} {v['latency_ms']:.3f}" for name, v in cands.items())
        print(f"{label}: latency ms per candidate (median) {shown}")
    return 0
