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


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--space", default="nasp-7", help="search space (default: nasp-7)")
    parser.add_argument("--data", default="fashion-mnist-sample",
                        help="dataset whose image shape and classes the network takes "
                        "(default: fashion-mnist-sample)")
    parser.add_argument("--data-root", default=None,
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
    parser.add_argument("-o", "--out", type=Path, default=Path("costs.json"),
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


def run(args: argparse.Namespace) -> int:
    import torch

    from nasp.costs import profile, save_table
    from nasp.device import resolve_device
    from nasp.spaces import get_space

    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
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
