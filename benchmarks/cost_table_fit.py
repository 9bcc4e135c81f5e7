"""How closely a cost table (``nasp profile``) predicts the latency of whole networks.

For each space, measures the cost table's entries (as ``nasp profile`` does) and, in the same
round-robin rounds, the evaluation networks of the published genotypes of that space, a few
random genotypes (seeded, uniform over ops and inputs) and two extremes (every edge the op
with the fewest / most multiply-adds), and prints measured vs predicted latency and the
relative error. Timing table and networks together keeps load that changes over time on a
shared machine out of the comparison; the error left is the additive model's.

    PYTHONPATH=src python benchmarks/cost_table_fit.py [--spaces nasp-7,nasp-12] \
        [--data fashion-mnist-sample] [--preset quick] [--threads 1] [--clock wall|cpu] \
        [--batch-size 1] [--random 4] [--repeats 20]
"""

from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from nasp.cli.profile import network_size
from nasp.costs import fill, item_inputs, plan, predict
from nasp.genotype import GENOTYPES, Genotype, cnn_genotype
from nasp.latency import Timing, modules_latency
from nasp.models.cnn import build_eval_model
from nasp.spaces import get_space

PUBLISHED = {"nasp-7": ["DARTS_V1", "DARTS_V2"], "darts": ["DARTS_V1", "DARTS_V2"],
             "nasp-12": ["NASP_12"]}


def random_genotype(space: str, seed: int) -> Genotype:
    rng = random.Random(seed)
    cells = []
    for t in ("normal", "reduce"):
        spec = get_space(space).cells[t]
        ops = [spec.ops[k] for k in spec.final_ops]
        cells.append([(rng.choice(ops), j) for node in range(spec.nodes)
                      for j in rng.sample(range(spec.inputs + node), 2)])
    return cnn_genotype(*cells)


def extreme_genotype(space: str, table: dict, dearest: bool) -> Genotype:
    """Every edge the op with the most (or fewest) multiply-adds in the table, DARTS inputs."""
    cells = []
    for t in ("normal", "reduce"):
        spec = get_space(space).cells[t]
        ops = [spec.ops[k] for k in spec.final_ops]
        pos = next(p for p in table["positions"] if p["cell_type"] == t and p["stride"] == 1)
        pick = (max if dearest else min)(ops, key=lambda op: (pos["ops"][op]["madds"], op))
        cells.append([(pick, j) for node in range(spec.nodes) for j in (0, 1)])
    return cnn_genotype(*cells)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spaces", default="nasp-7,nasp-12")
    ap.add_argument("--data", default="fashion-mnist-sample")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--layers", type=int, default=None)
    ap.add_argument("--channels", type=int, default=None)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clock", choices=("wall", "cpu"), default="wall")
    ap.add_argument("--batch-size", type=int, default=1)
    ap.add_argument("--random", type=int, default=4, help="random genotypes per space")
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    (c, h, w, classes), layers, channels = network_size(args.data, None, args.preset,
                                                        args.layers, args.channels)
    print(f"{layers} cells, C={channels}, {c}x{h}x{w}, batch {args.batch_size}, {device}, "
          f"{args.threads} thread(s), {args.clock} clock, median of {args.repeats}")
    errors = []
    for space in args.spaces.split(","):
        t0 = time.perf_counter()
        table, items = plan(get_space(space), (c, h, w), classes, channels, layers)
        # the extremes are chosen by multiply-adds, known before any timing
        fill(items, [Timing(0.0, 0.0, 0, 0)] * len(items))
        genotypes = {n: GENOTYPES["cnn"][n] for n in PUBLISHED.get(space, [])}
        genotypes |= {f"random-{s}": random_genotype(space, s) for s in range(args.random)}
        genotypes["cheapest"] = extreme_genotype(space, table, dearest=False)
        genotypes["dearest"] = extreme_genotype(space, table, dearest=True)
        nets = [build_eval_model(g, c, classes, (h, w), channels=channels, layers=layers)
                for g in genotypes.values()]
        x = torch.randn(args.batch_size, c, h, w)
        # table entries and whole networks timed in the same rounds: the comparison is not
        # skewed by load that changes between a profile and a later measurement
        timings = modules_latency(item_inputs(items, args.batch_size) + [(n, (x,)) for n in nets],
                                  device, repeats=args.repeats, clock=args.clock)
        fill(items, timings[:len(items)])
        print(f"\n{space}: {len(items)} table entries and {len(nets)} networks timed in "
              f"{time.perf_counter() - t0:.1f} s")
        print(f"{'genotype':<12}{'measured ms':>12}{'predicted ms':>14}{'error':>9}")
        for (name, g), t in zip(genotypes.items(), timings[len(items):]):
            pred = predict(table, g, "latency")
            err = (pred - t.ms) / t.ms
            errors.append(err)
            print(f"{name:<12}{t.ms:>12.3f}{pred:>14.3f}{100 * err:>+8.1f}%")
    abs_err = [abs(e) for e in errors]
    print(f"\n{len(errors)} networks: mean |error| {100 * statistics.mean(abs_err):.1f}%, "
          f"max {100 * max(abs_err):.1f}%, mean error {100 * statistics.mean(errors):+.1f}%")


if __name__ == "__main__":
    main()
