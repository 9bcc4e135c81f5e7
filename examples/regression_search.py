"""Not a classifier: a regression network whose hidden widths and activations are searched, with
its own loss, on scikit-learn's diabetes data (442 patients, 10 features, disease progression
after a year; bundled with scikit-learn: ``pip install scikit-learn``, or ``pip install
'nasp[examples]'``).

Each residual block chooses its hidden width (``nasp.Choice`` of three MLPs) and, inside every
width, its activation (a nested ``nasp.Choice`` whose label is shared by the three widths, so the
block has one activation whatever width wins). The loss is the user's (Huber), the validation
metrics too (mean absolute error, R²): nasp needs nothing of a task but
``loss(model, batch) -> scalar``.

    python examples/regression_search.py        # well under a minute on a 2-core CPU
"""

from __future__ import annotations

import argparse
import sys

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import nasp

WIDTHS = (16, 32, 64)


def activations() -> dict[str, nn.Module]:
    return {"relu": nn.ReLU(), "tanh": nn.Tanh(), "gelu": nn.GELU(), "silu": nn.SiLU()}


class Block(nn.Module):
    """x + MLP(x), the MLP's hidden width and activation chosen by the search."""

    def __init__(self, d: int, label: str) -> None:
        super().__init__()
        self.mlp = nasp.Choice({
            f"w{w}": nn.Sequential(nn.Linear(d, w), nasp.Choice(activations(),
                                                                label=f"{label}.act"),
                                   nn.Linear(w, d))
            for w in WIDTHS}, label=f"{label}.width")
        self.norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x + self.mlp(x))


class Regressor(nn.Module):
    def __init__(self, features: int = 10, d: int = 32, blocks: int = 2) -> None:
        super().__init__()
        self.inp = nn.Linear(features, d)
        self.blocks = nn.Sequential(*(Block(d, f"block{i}") for i in range(blocks)))
        self.out = nn.Linear(d, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.blocks(self.inp(x))).squeeze(-1)


def diabetes(seed: int = 0) -> dict[str, TensorDataset]:
    """Standardised features and target; 60% train (weights), 20% architecture, 20% test."""
    try:
        from sklearn.datasets import load_diabetes
    except ImportError:
        sys.exit("this example reads scikit-learn's diabetes data: pip install scikit-learn")
    data = load_diabetes()
    x = torch.tensor(data.data, dtype=torch.float32)
    y = torch.tensor(data.target, dtype=torch.float32)
    order = torch.randperm(len(y), generator=torch.Generator().manual_seed(seed))
    a, b = int(0.6 * len(y)), int(0.8 * len(y))
    train = order[:a]
    mx, sx, my, sy = x[train].mean(0), x[train].std(0), y[train].mean(), y[train].std()
    x, y = (x - mx) / sx, (y - my) / sy
    parts = {"train": train, "valid": order[a:b], "test": order[b:]}
    return {k: TensorDataset(x[i], y[i]) for k, i in parts.items()}


def huber(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return F.huber_loss(model(x), y, delta=1.0)


def metrics(model: nn.Module, batch) -> dict[str, torch.Tensor]:
    x, y = batch
    pred = model(x)
    return {"mae": (pred - y).abs().mean(),
            "r2": 1 - ((pred - y) ** 2).sum() / ((y - y.mean()) ** 2).sum()}


def main(argv: list[str] | None = None) -> dict[str, object]:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--strategy", default="nasp")
    p.add_argument("--epochs", type=int, default=30)
    p.add_argument("--out", default="runs/example-regression")
    p.add_argument("--quiet", action="store_true")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    data = diabetes()
    model = Regressor()
    res = nasp.search(model=model, strategy=args.strategy, loss=huber, metrics=metrics,
                      train=DataLoader(data["train"], batch_size=32, shuffle=True,
                                       drop_last=True),
                      valid=DataLoader(data["valid"], batch_size=32, shuffle=True,
                                       drop_last=True),
                      epochs=args.epochs, seed=0, lr=0.05, lr_min=0.005, weight_decay=1e-4,
                      arch_lr=0.01, out=args.out, overwrite=True, progress=not args.quiet)
    last = res.metrics[-1]
    print(f"architecture: {res.arch}")
    print(f"search: validation Huber {last['valid_loss']:.4f}, MAE {last['valid_mae']:.4f}, "
          f"R² {last['valid_r2']:.4f} (standardised target)")
    fixed = nasp.fix(model, res.arch).eval()  # the network the search trained, as it is
    x, y = data["test"].tensors
    with torch.no_grad():
        test = {k: float(v) for k, v in metrics(fixed, (x, y)).items()}
    print(f"fixed network on {len(y)} held-out patients: MAE {test['mae']:.4f}, "
          f"R² {test['r2']:.4f}")
    return {"arch": res.arch, "test": test, "result": res}


if __name__ == "__main__":
    main(sys.argv[1:])
