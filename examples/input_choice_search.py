"""Which earlier outputs should a block read? A small DenseNet-like network in which every block
adds two of the feature maps before it (``nasp.InputChoice(n, k=2)``) and chooses its own
operation (``nasp.Choice``), searched with NASP on scikit-learn's handwritten digits (8x8
images, bundled with scikit-learn: ``pip install scikit-learn``, or ``pip install
'nasp[examples]'``).

The search runs from Python on plain DataLoaders and a plain loss; NASP keeps exactly two inputs
per block throughout (the keep-k rule of a cell node), so the network it trains is the network it
returns. The found network is then retrained from scratch and tested on digits no search saw:

    python examples/input_choice_search.py          # about a minute on a 2-core CPU
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nasp


def op_candidates(c: int) -> dict[str, nn.Module]:
    def conv(k: int, groups: int = 1) -> nn.Module:
        return nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, groups=groups, bias=False),
                             nn.BatchNorm2d(c), nn.ReLU())

    return {"conv3": conv(3), "conv5": conv(5), "dw3": conv(3, groups=c),
            "pool": nn.AvgPool2d(3, 1, 1)}


class DenseChoices(nn.Module):
    """A stem, then blocks; block i (i >= 1) sums two of the i + 1 maps before it (the stem's
    and every earlier block's) and applies its chosen operation."""

    def __init__(self, classes: int = 10, c: int = 16, blocks: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, c, 3, padding=1, bias=False), nn.BatchNorm2d(c),
                                  nn.ReLU())
        self.inputs = nn.ModuleList(nasp.InputChoice(i + 1, k=2) for i in range(1, blocks))
        self.ops = nn.ModuleList(nasp.Choice(op_candidates(c)) for _ in range(blocks))
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        states = [self.stem(x)]
        for i, op in enumerate(self.ops):
            h = states[0] if i == 0 else self.inputs[i - 1](states)
            states.append(op(h))
        return self.head(states[-1].mean((2, 3)))


def digits(seed: int = 0) -> dict[str, TensorDataset]:
    """scikit-learn's 1,797 digits as 1x8x8 float images in [0, 1]: 60% to train the weights,
    20% to train the architecture, 20% held out for the final test."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        sys.exit("this example reads scikit-learn's digits: pip install scikit-learn")
    data = load_digits()
    x = torch.tensor(data.images, dtype=torch.float32).unsqueeze(1) / 16.0
    y = torch.tensor(data.target)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    parts = {"train": order[:a], "valid": order[a:b], "test": order[b:]}
    return {k: TensorDataset(x[i], y[i]) for k, i in parts.items()}


def loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def accuracy(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    x, y = batch
    return {"acc": (model(x).argmax(1) == y).float().mean()}


def train_fixed(model: nn.Module, data: TensorDataset, epochs: int) -> None:
    """Plain training of the fixed network: it is an ordinary nn.Module."""
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=3e-4)
    loader = DataLoader(data, batch_size=64, shuffle=True)
    model.train()
    for _ in range(epochs):
        for batch in loader:
            opt.zero_grad()
            loss(model, batch).backward()
            opt.step()


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="nasp")
    p.add_argument("--epochs", type=int, default=15, help="search epochs")
    p.add_argument("--train-epochs", type=int, default=15, help="retraining epochs")
    p.add_argument("--out", default="runs/example-inputs")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    data = digits()
    model = DenseChoices()
    res = nasp.search(model=model, strategy=args.strategy,
                      train=DataLoader(data["train"], batch_size=64, shuffle=True,
                                       drop_last=True),
                      valid=DataLoader(data["valid"], batch_size=64, shuffle=True,
                                       drop_last=True),
                      loss=loss, metrics=accuracy, epochs=args.epochs, seed=0, arch_lr=0.01,
                      out=args.out, overwrite=True, progress=not args.quiet)
    print(f"architecture: {res.arch}")
    print(f"search-time validation accuracy {res.metrics[-1]['valid_acc']:.4f}")
    torch.manual_seed(1)
    fixed = nasp.fix(model, res.arch, fresh=True)  # the same network, new weights
    train_fixed(fixed, torch.utils.data.ConcatDataset([data["train"], data["valid"]]),
                args.train_epochs)
    fixed.eval()
    x, y = data["test"].tensors
    with torch.no_grad():
        test_acc = float((fixed(x).argmax(1) == y).float().mean())
    print(f"retrained from scratch: test accuracy {test_acc:.4f} on {len(y)} held-out digits")
    return {"arch": res.arch, "test_acc": test_acc, "result": res}


if __name__ == "__main__":
    main(sys.argv[1:])
