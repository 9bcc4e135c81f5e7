"""Tiny search setups shared by the core tests (no data files needed)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from nasp.spaces import get_space
from nasp.strategies import ArchContext
from nasp.supernet.cnn import SearchCNN


def tiny_net(space: str = "nasp-7", channels: int = 4, layers: int = 3, dtype=torch.float64):
    torch.manual_seed(0)
    net = SearchCNN(get_space(space), 1, 5, channels=channels, layers=layers).to(dtype)
    return net


def tiny_batch(n: int = 6, size: int = 10, dtype=torch.float64, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, size, size, generator=g, dtype=dtype)
    return x, torch.randint(0, 5, (n,), generator=g)


def loss_fn(net):
    def f(batch, weighting):
        x, y = batch
        return F.cross_entropy(net(x, weighting), y)

    return f


def context(net, lr=0.1, momentum=0.9, wd=3e-4):
    params = list(net.parameters())
    opt = torch.optim.SGD(params, lr=lr, momentum=momentum, weight_decay=wd)
    return ArchContext(loss_fn(net), params, opt, list(net.buffers()))
