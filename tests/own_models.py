"""A small user model with choices and its data, for the run-level tests (imported by the tests
and run as a script by the kill-and-resume test: ``python own_models.py search|resume RUN``)."""

from __future__ import annotations

import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nasp


def block(c: int, k: int) -> nn.Module:
    return nn.Sequential(nn.Conv2d(c, c, k, padding=k // 2, bias=False), nn.BatchNorm2d(c),
                         nn.ReLU())


class Small(nn.Module):
    """Stem, two blocks that choose a kernel (or to be skipped), a choice of 2 of 3 outputs,
    dropout (random state to restore) and a head."""

    def __init__(self, cin: int = 1, classes: int = 3, c: int = 4) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(cin, c, 3, padding=1, bias=False),
                                  nn.BatchNorm2d(c), nn.ReLU())
        self.b1 = nasp.Choice({"k3": block(c, 3), "k5": block(c, 5), "skip": nn.Identity()})
        self.b2 = nasp.Choice({"k3": block(c, 3), "k5": block(c, 5), "skip": nn.Identity()})
        self.join = nasp.InputChoice(3, k=2)
        self.drop = nn.Dropout(0.1)
        self.head = nn.Linear(c, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x0 = self.stem(x)
        x1 = self.b1(x0)
        x2 = self.b2(x1)
        return self.head(self.drop(self.join([x0, x1, x2]).mean((2, 3))))


def data(n: int = 128, seed: int = 0, own_generator: bool = True) -> tuple[DataLoader, DataLoader]:
    """Shuffled loaders: the training one draws its order from its own generator, the
    validation one from torch's global generator (both must be restored by a resume)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(2 * n) % 3
    x = torch.randn(2 * n, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 0.7
    gen = torch.Generator().manual_seed(seed + 1) if own_generator else None
    train = DataLoader(TensorDataset(x[:n], y[:n]), batch_size=16, shuffle=True, generator=gen,
                       drop_last=True)
    valid = DataLoader(TensorDataset(x[n:], y[n:]), batch_size=16, shuffle=True, drop_last=True)
    return train, valid


def loss(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.cross_entropy(model(x), y)


def accuracy(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    x, y = batch
    return {"acc": (model(x).argmax(1) == y).float().mean()}


def run(command: str, out: str, epochs: int = 6, strategy: str = "nasp", **options):
    torch.manual_seed(0)
    train, valid = data()
    kw = dict(model=Small(), train=train, valid=valid, loss=loss, metrics=accuracy,
              progress=False, device="cpu")
    if command == "search":
        return nasp.search(strategy=strategy, epochs=epochs, seed=0, out=out, arch_lr=0.05,
                           **kw, **options)
    return nasp.resume(out, **kw)


if __name__ == "__main__":
    torch.set_num_threads(1)
    run(sys.argv[1], sys.argv[2], epochs=int(sys.argv[3]) if len(sys.argv) > 3 else 6,
        strategy=sys.argv[4] if len(sys.argv) > 4 else "nasp")
