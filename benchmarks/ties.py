"""How often NASP's discretization meets exact ties once A reaches the box's edge.

A is clipped to [0, 1], so after enough steps several ops of an edge can sit at exactly 1 (or
all at 0), and several edges of a node can share the same winning value. This script runs a real
search (the same loop and options as ``nasp search``) and, after every architecture step, counts

* op ties: edges whose largest value is shared by two or more ops that may win;
* edge ties: nodes where the last kept edge and the first dropped one have the same strength,

and how many entries of A sit on the box (0 or 1). Before the tie-breaking fix such ties went to
the first op and the earliest edge; now they follow a seeded priority (strategies/discretize.py).

    python benchmarks/ties.py --arch-lr 3e-3                   # the quick preset's arch lr
    python benchmarks/ties.py --arch-lr 3e-4                   # the paper's arch lr
    python benchmarks/ties.py --arch-lr 3e-4 --epochs 50       # longer: A reaches the box
Any other ``nasp search`` option can follow (``--channels 4 --layers 3`` for a faster run).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch-lr", type=float, required=True)
    parser.add_argument("--threads", type=int, default=1)
    args, rest = parser.parse_known_args()

    import torch

    torch.set_num_threads(args.threads)
    from nasp.cli.options import given_options
    from nasp.cli.search import add_arguments
    from nasp.configs import SearchConfig, resolve
    from nasp.loops.search import run_search
    from nasp.strategies.nasp import NASP

    search_parser = argparse.ArgumentParser()
    add_arguments(search_parser)
    options = given_options(search_parser.parse_args(rest), SearchConfig)
    cfg = resolve(SearchConfig, {**options, "strategy": "nasp", "arch_lr": args.arch_lr})

    stats = {"steps": 0, "steps_with_op_tie": 0, "op_ties": 0, "steps_with_edge_tie": 0,
             "edge_ties": 0, "on_box_max": 0.0, "A_min": 1.0, "A_max": 0.0}
    restored = NASP.restored

    def counting(self: NASP) -> None:
        restored(self)
        op_ties = edge_ties = 0
        on_box = total = 0
        for name, cell in self.cells.items():
            a = self.arch[name].detach().double().cpu().numpy()
            final = list(cell.final_ops)
            v = a[:, final]
            top = v.max(axis=1, keepdims=True)
            op_ties += int(((v == top).sum(axis=1) > 1).sum())
            strength = v.max(axis=1)
            for i, edges in enumerate(cell.node_edges):
                s = np.sort(strength[list(edges)])[::-1]
                k = cell.kept(i)
                if k < len(s) and s[k - 1] == s[k]:
                    edge_ties += 1
            on_box += int(((a == 0) | (a == 1)).sum())
            total += a.size
            stats["A_min"] = min(stats["A_min"], float(a.min()))
            stats["A_max"] = max(stats["A_max"], float(a.max()))
        stats["steps"] += 1
        stats["op_ties"] += op_ties
        stats["edge_ties"] += edge_ties
        stats["steps_with_op_tie"] += int(op_ties > 0)
        stats["steps_with_edge_tie"] += int(edge_ties > 0)
        stats["on_box_max"] = max(stats["on_box_max"], on_box / total)

    NASP.restored = counting  # type: ignore[method-assign]
    t0 = time.perf_counter()
    run_search(cfg, progress=False)
    stats["steps"] -= 1  # the call at construction is not a step
    stats["seconds"] = round(time.perf_counter() - t0, 1)
    stats.update(arch_lr=args.arch_lr, epochs=cfg.epochs, preset=cfg.preset,
                 channels=cfg.channels, layers=cfg.layers)
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
