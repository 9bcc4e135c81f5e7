"""Tiny search setups shared by the tests (no data files needed)."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from nasp.configs import SearchConfig, resolve
from nasp.spaces import get_space
from nasp.spaces.base import SearchSpace
from nasp.strategies import ArchContext, StrategySetup, create_strategy
from nasp.supernet.cnn import SearchCNN

SETUP_FIELDS = {f.name for f in dataclasses.fields(StrategySetup)}


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
    return ArchContext(loss_fn(net), params, opt)


def make_strategy(name: str, space: str | SearchSpace = "nasp-7", dtype=torch.float64, **kw):
    """A strategy with float64 architecture tensors by default; keyword arguments that are
    ``StrategySetup`` fields go there, the rest are strategy options."""
    setup = {k: kw.pop(k) for k in list(kw) if k in SETUP_FIELDS}
    space = get_space(space) if isinstance(space, str) else space
    return create_strategy(name, StrategySetup(space=space, dtype=dtype, **setup), kw)


class SyntheticTask:
    """32 training, 32 validation and 32 test 1x8x8 images of 5 classes; the class shifts the
    mean, so the network can learn something. Batch order depends only on (seed, epoch)."""

    def __init__(self, cfg: SearchConfig, device, dist=None, batch_stats: bool = True):
        from nasp.distributed import Dist

        self.space = get_space(cfg.space)
        self.device = device
        self.dist = dist or Dist()
        g = torch.Generator().manual_seed(100 + cfg.seed)
        y = torch.arange(96) % 5
        x = torch.randn(96, 1, 8, 8, generator=g) + y.view(-1, 1, 1, 1) * 0.5
        self.train, self.valid, self.test = (x[:32], y[:32]), (x[32:64], y[32:64]), \
            (x[64:], y[64:])
        self.held_out = self.valid if cfg.evaluate_on == "valid" else self.test
        self.prefix = cfg.evaluate_on
        self.bs, self.seed = cfg.batch_size, cfg.seed
        self.model = SearchCNN(self.space, 1, 5, channels=cfg.channels, layers=cfg.layers)
        if not batch_stats:  # every op a per-sample function: shards add up to the batch
            without_batch_norm(self.model)
        self.dataset = SimpleNamespace(channels=1, num_classes=5, image_size=(8, 8))

    def steps_per_epoch(self):
        return 32 // self.bs

    def batches(self, epoch):
        g = torch.Generator().manual_seed(1000 * self.seed + epoch)
        pt, pv = torch.randperm(32, generator=g), torch.randperm(32, generator=g)
        for i in range(self.steps_per_epoch()):
            lo, hi = self.dist.batch_rows(i, self.bs)  # this rank's shard of the batch
            t, v = pt[lo:hi], pv[lo:hi]
            yield (self.train[0][t], self.train[1][t]), (self.valid[0][v], self.valid[1][v])

    def loss(self, batch, weighting):
        x, y = batch
        return F.cross_entropy(self.model(x, weighting), y)

    def train_loss(self, batch, weighting):
        x, y = batch
        logits = self.model(x, weighting)
        loss = F.cross_entropy(logits, y)
        return loss, {"loss_sum": loss.detach() * len(y),
                      "correct": (logits.argmax(1) == y).sum(),
                      "count": torch.tensor(len(y))}

    @staticmethod
    def summarize(sums, prefix):
        n = max(sums.get("count", 0.0), 1.0)
        return {f"{prefix}_loss": sums["loss_sum"] / n, f"{prefix}_acc": sums["correct"] / n}

    @torch.no_grad()
    def evaluate(self, weighting):
        self.model.eval()
        lo, hi = self.dist.eval_range(len(self.held_out[1]))
        x, y = self.held_out[0][lo:hi], self.held_out[1][lo:hi]
        logits = self.model(x, weighting)
        self.model.train()
        sums = self.dist.sum_metrics({
            "loss_sum": F.cross_entropy(logits, y, reduction="sum").double(),
            "correct": (logits.argmax(1) == y).sum().double(),
            "count": torch.tensor(float(len(y)), dtype=torch.float64)})
        return self.summarize({k: float(v) for k, v in sums.items()}, self.prefix)

    def genotype_metrics(self, genotype):
        return {}

    def eval_params_m(self, genotype):
        return 0.01 * len(genotype.cells)

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


TINY = dict(channels=4, layers=3, batch_size=8, epochs=4, preset="quick", device="cpu",
            max_train_samples=None)


def tiny_cfg(**kw) -> SearchConfig:
    return resolve(SearchConfig, {**TINY, **kw})


def without_batch_norm(model: torch.nn.Module) -> None:
    """Replace every batch norm by the identity (tests of sharded vs. whole batches)."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, torch.nn.modules.batchnorm._BatchNorm):
                setattr(module, name, torch.nn.Identity())


def use_synthetic_task(monkeypatch, batch_stats: bool = True) -> None:
    import nasp.loops.search as search_loop

    monkeypatch.setattr(search_loop, "build_task", lambda cfg, device, dist=None:
                        SyntheticTask(cfg, device, dist, batch_stats))
