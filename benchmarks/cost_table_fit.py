"""How closely a cost table (``nasp profile``) predicts the latency of whole networks.

For each space, measures the cost table's entries (as ``nasp profile`` does) and, in the same
round-robin rounds, the evaluation networks of the published genotypes of that space, a few
random genotypes (seeded, uniform over ops and inputs), two extremes (every edge the op
with the fewest / most multiply-adds) and, with ``--genotypes``, found ones, and prints
measured vs predicted latency, the relative error, and per space the mean and largest
absolute relative error. Timing table and networks together keeps load that changes over time
on a shared machine out of the comparison; the error left is the additive model's.

Found genotypes are what a cost-regularised search optimises, so their error is the one that
matters most; published and random ones need not resemble them. Each ``--genotypes`` PATH is a
search run folder or a genotype.json: it is measured in its run's space (``config.json`` in
the folder, or beside the file; that space is added to ``--spaces`` if missing), else in every
space of ``--spaces`` whose ops and cell shape it fits.

    PYTHONPATH=src python benchmarks/cost_table_fit.py [--spaces nasp-7,nasp-12] \
        [--data fashion-mnist-sample] [--preset quick] [--threads 1] [--clock wall|cpu] \
        [--batch-size 1] [--random 4] [--repeats 20] [--genotypes RUN [genotype.json ...]]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import time
from pathlib import Path

import torch

from nasp.cli.profile import network_size
from nasp.costs import fill, item_inputs, plan, predict
from nasp.errors import NaspError
from nasp.genotype import GENOTYPES, Genotype, cnn_genotype, get_genotype
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


def fits(space: str, genotype: Genotype) -> bool:
    """Whether ``genotype`` is a network of ``space``: a DARTS-family genotype whose every cell
    uses only the space's final ops and concatenates the space's number of nodes."""
    if genotype.family != "darts":
        return False
    cells = get_space(space).cells
    for t, pairs in genotype.cells.items():
        spec = cells.get(t)
        if spec is None or len(genotype.concat[t]) != spec.nodes:
            return False
        allowed = {spec.ops[k] for k in spec.final_ops}
        if any(op not in allowed for op, _ in pairs):
            return False
    return True


def run_space(path: Path) -> str | None:
    """The space of the search that wrote ``path`` (a run folder or a genotype.json in one),
    from its config.json; None for a genotype file with no run beside it."""
    config = (path if path.is_dir() else path.parent) / "config.json"
    if not config.is_file():
        return None
    return json.loads(config.read_text()).get("space")


def found_genotypes(paths: list[str], spaces: list[str]) -> dict[str, dict[str, Genotype]]:
    """``{space: {label: genotype}}`` of the ``--genotypes`` paths (see the module docstring);
    ``spaces`` gains the runs' spaces it lacks. A genotype that fits no space is an error."""
    out: dict[str, dict[str, Genotype]] = {}
    for raw in paths:
        path = Path(raw)
        g = get_genotype(path)
        label = "found:" + (path.name if path.is_dir() else f"{path.parent.name}/{path.name}")
        known = run_space(path)
        if known is not None and known not in spaces:
            spaces.append(known)
        targets = [known] if known is not None else [s for s in spaces if fits(s, g)]
        if not targets or not fits(targets[0], g):
            where = ", ".join(targets or spaces)
            raise NaspError(f"{path}: the genotype is not a network of {where}",
                            "pass a CNN genotype and --spaces with the space it was searched in")
        for s in targets:
            out.setdefault(s, {})[label] = g
    return out


def summary(name: str, errors: list[float]) -> str:
    """Mean and largest absolute relative error (and the mean signed one) of ``errors``."""
    abs_err = [abs(e) for e in errors]
    return (f"{name}: {len(errors)} networks, mean |error| {100 * statistics.mean(abs_err):.1f}%, "
            f"max {100 * max(abs_err):.1f}%, mean error {100 * statistics.mean(errors):+.1f}%")


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
    ap.add_argument("--genotypes", nargs="+", default=[], metavar="PATH",
                    help="found genotypes too: search run folders or genotype.json files")
    args = ap.parse_args()
    spaces = args.spaces.split(",")
    try:
        found = found_genotypes(args.genotypes, spaces)
    except NaspError as e:  # a wrong path or space: the message, not a traceback
        raise SystemExit(f"error: {e}") from None
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    (c, h, w, classes), layers, channels = network_size(args.data, None, args.preset,
                                                        args.layers, args.channels)
    print(f"{layers} cells, C={channels}, {c}x{h}x{w}, batch {args.batch_size}, {device}, "
          f"{args.threads} thread(s), {args.clock} clock, median of {args.repeats}")
    errors: dict[str, list[float]] = {}
    found_errors: dict[str, list[float]] = {}
    for space in spaces:
        t0 = time.perf_counter()
        table, items = plan(get_space(space), (c, h, w), classes, channels, layers)
        # the extremes are chosen by multiply-adds, known before any timing
        fill(items, [Timing(0.0, 0.0, 0, 0)] * len(items))
        genotypes = {n: GENOTYPES["cnn"][n] for n in PUBLISHED.get(space, [])}
        genotypes |= {f"random-{s}": random_genotype(space, s) for s in range(args.random)}
        genotypes["cheapest"] = extreme_genotype(space, table, dearest=False)
        genotypes["dearest"] = extreme_genotype(space, table, dearest=True)
        genotypes |= found.get(space, {})
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
        width = max(12, *(len(n) + 1 for n in genotypes))
        print(f"{'genotype':<{width}}{'measured ms':>12}{'predicted ms':>14}{'error':>9}")
        for (name, g), t in zip(genotypes.items(), timings[len(items):]):
            pred = predict(table, g, "latency")
            err = (pred - t.ms) / t.ms
            errors.setdefault(space, []).append(err)
            if name in found.get(space, {}):
                found_errors.setdefault(space, []).append(err)
            print(f"{name:<{width}}{t.ms:>12.3f}{pred:>14.3f}{100 * err:>+8.1f}%")
    print()
    for space, errs in errors.items():
        print(summary(space, errs))
        if space in found_errors:
            print(summary(f"{space} (found only)", found_errors[space]))
    print(summary("all spaces", [e for errs in errors.values() for e in errs]))


if __name__ == "__main__":
    main()
