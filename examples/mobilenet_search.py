"""A MobileNetV2-style backbone whose every inverted-residual block is searched: kernel 3, 5 or 7,
expansion 3 or 6, and (where the shapes allow it) whether the block exists at all.

The model is plain PyTorch; each block is one ``nasp.Choice`` of its seven candidates. NASP and
DARTS search it on nasp's bundled Fashion-MNIST sample through the same loop; the script prints
what each found and what a search step cost (time per phase, peak memory), side by side, then
the fixed network NASP trained. A few minutes on a 2-core CPU:

    python examples/mobilenet_search.py
    python examples/mobilenet_search.py --strategies nasp --epochs 10     # NASP alone, longer

The same model from the command line (the function takes ``(in_channels, num_classes)``):

    nasp search --space examples/mobilenet_search.py:mobilenet --epochs 6 --out runs/mbv2
    nasp train --arch runs/mbv2 --epochs 10          # its fixed network from scratch
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn

import nasp

PHASES = ("time_arch", "time_forward", "time_backward")  # of a search step, in result.json
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 6)


class InvertedResidual(nn.Module):
    """1x1 expansion, k x k depthwise convolution, 1x1 projection (MobileNetV2's block)."""

    def __init__(self, cin: int, cout: int, stride: int, kernel: int, expansion: int) -> None:
        super().__init__()
        hidden = cin * expansion
        self.body = nn.Sequential(
            nn.Conv2d(cin, hidden, 1, bias=False), nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, hidden, kernel, stride, kernel // 2, groups=hidden, bias=False),
            nn.BatchNorm2d(hidden), nn.ReLU6(),
            nn.Conv2d(hidden, cout, 1, bias=False), nn.BatchNorm2d(cout))
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.body(x)
        return x + y if self.residual else y


def searchable_block(cin: int, cout: int, stride: int) -> nasp.Choice:
    """One block: every (kernel, expansion), and "skip" where input and output shapes agree."""
    candidates: dict[str, nn.Module] = {
        f"k{k}_e{e}": InvertedResidual(cin, cout, stride, k, e)
        for k in KERNELS for e in EXPANSIONS}
    if stride == 1 and cin == cout:
        candidates["skip"] = nn.Identity()
    return nasp.Choice(candidates)


class MobileNetSpace(nn.Module):
    """Stem, stages of searchable blocks (the first of a stage sets its width and stride), a
    1x1 head convolution, global pooling and a classifier."""

    def __init__(self, in_channels: int, num_classes: int,
                 stages: tuple[tuple[int, int, int], ...], stem: int, head: int,
                 stem_stride: int = 1) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(in_channels, stem, 3, stem_stride, 1, bias=False),
                                  nn.BatchNorm2d(stem), nn.ReLU6())
        blocks, cin = [], stem
        for cout, repeats, stride in stages:
            for i in range(repeats):
                blocks.append(searchable_block(cin, cout, stride if i == 0 else 1))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Sequential(nn.Conv2d(cin, head, 1, bias=False), nn.BatchNorm2d(head),
                                  nn.ReLU6(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Linear(head, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def mobilenet(in_channels: int, num_classes: int) -> MobileNetSpace:
    """Small enough to search on a CPU in minutes: 7 searchable blocks, 28x28 inputs halved by
    the stem (as MobileNetV2's), then 14, 7 and 4 pixels wide."""
    return MobileNetSpace(in_channels, num_classes, stem=8, head=64, stem_stride=2,
                          stages=((8, 1, 1), (16, 2, 2), (24, 2, 2), (32, 2, 1)))


def mobilenet_wide(in_channels: int, num_classes: int) -> MobileNetSpace:
    """The same space at MobileNetV2's widths for 32x32 inputs (12 searchable blocks): the size
    of the speed and memory benchmark (benchmarks/step_time.py), where DARTS needs > 4 GB."""
    return MobileNetSpace(in_channels, num_classes, stem=32, head=256,
                          stages=((16, 1, 1), (24, 2, 1), (32, 3, 2), (64, 4, 2), (96, 2, 1)))


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategies", default="nasp,darts")
    # 6,000 images and 5 epochs: ~47 weight steps per epoch, enough for NASP to reach ~75%
    # validation accuracy in about 25 s (1,200 images left both strategies near chance)
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--samples", type=int, default=6000,
                   help="training images, split half/half between weights and architecture")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--out", default="runs/example-mobilenet")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    space = f"{Path(__file__).resolve()}:mobilenet"
    results = {}
    for strategy in args.strategies.split(","):
        res = nasp.search(space=space, strategy=strategy, epochs=args.epochs, seed=0,
                          max_train_samples=args.samples, batch_size=args.batch_size,
                          arch_lr=3e-3, out=f"{args.out}/{strategy}", overwrite=True,
                          progress=not args.quiet)
        results[strategy] = res
    print(f"\n{'strategy':<8}{'s/step':>9}{'arch':>8}{'fwd':>8}{'bwd':>8}{'peak MB':>9}"
          f"{'valid acc':>11}  architecture")
    for name, res in results.items():
        r = res.result
        per = {k: r[k] / max(r["steps"], 1) for k in PHASES}
        print(f"{name:<8}{sum(per.values()):>9.3f}{per['time_arch']:>8.3f}"
              f"{per['time_forward']:>8.3f}{per['time_backward']:>8.3f}{r['peak_mem_mb']:>9.0f}"
              f"{r.get('search_valid_acc', float('nan')):>11.4f}  {res.arch}")
    if {"nasp", "darts"} <= set(results):
        a, b = results["darts"].result, results["nasp"].result
        ta, tb = (sum(r[k] for k in PHASES) / max(r["steps"], 1) for r in (a, b))
        print(f"darts / nasp: search-step time x{ta / tb:.2f}, peak memory (whole process) "
              f"x{a['peak_mem_mb'] / b['peak_mem_mb']:.2f}")
    first = next(iter(results.values()))
    fixed = nasp.fix(first.model, first.arch)
    print(f"{next(iter(results))}'s fixed network: "
          f"{sum(p.numel() for p in fixed.parameters()) / 1e6:.3f} M parameters, the weights its "
          f"search trained (nasp.fix); retrain it with `nasp train --arch {first.run_dir}`")
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
