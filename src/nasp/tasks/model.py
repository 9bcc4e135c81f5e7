"""A user's own model, loss and batches as a search task (``nasp.search(model=...)``).

Batches come from any iterables (DataLoaders): an epoch is one pass over the training batches
(or ``max_steps_per_epoch`` of them), each paired with the next validation batch, the
validation iterable started again whenever it runs out (as DARTS draws a validation batch per
training batch); a split of 80/20 thus trains on all its training data every epoch. Every
tensor of a batch (nested in tuples, lists or dicts) moves to the device; with several
processes each rank takes its slice of every tensor's first dimension, so a batch stays the
global batch, as ``--batch-size`` does for nasp's own data.

The loss is the user's ``loss(model, batch) -> scalar tensor``, so any task the model's forward
does (classification, regression, segmentation, ...) searches the same way. The per-epoch
validation metric is the mean loss over the validation batches (``valid_loss``), plus the means
of ``metrics(model, batch) -> {name: scalar tensor}`` when given (e.g. accuracy, as
``valid_acc``).

Exact resume: an iterable that shuffles draws its order from torch's global generator
(DataLoader's default), which the checkpoint restores, or from its own ``generator``, whose
state this task checkpoints; so a resumed search reads the same batches as a straight one.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

import torch
from torch import nn

from nasp.configs import SearchConfig
from nasp.costs import own_costs
from nasp.distributed import Dist
from nasp.errors import NaspError
from nasp.models.fixed import fix, params_m
from nasp.supernet.model import ModelNet
from nasp.supernet.weighting import Weighting

LossFn = Callable[[nn.Module, Any], torch.Tensor]
_END = object()
MetricsFn = Callable[[nn.Module, Any], Mapping[str, torch.Tensor]]


def to_device(batch: Any, device: torch.device) -> Any:
    """``batch`` with every tensor in it on ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):  # a named tuple
        return type(batch)(*(to_device(v, device) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def shard(batch: Any, rank: int, world_size: int) -> Any:
    """This rank's slice of every tensor's first dimension (the whole batch on one process)."""
    if world_size == 1:
        return batch
    if isinstance(batch, torch.Tensor):
        n = batch.shape[0] if batch.dim() else 0
        if n % world_size or n == 0:
            raise NaspError(f"a batch of {n} samples does not split evenly over {world_size} "
                            "processes", f"use batches of a multiple of {world_size} samples "
                            "(and drop_last=True in the DataLoader)")
        per = n // world_size
        return batch[rank * per:(rank + 1) * per]
    if isinstance(batch, dict):
        return {k: shard(v, rank, world_size) for k, v in batch.items()}
    if isinstance(batch, tuple) and hasattr(batch, "_fields"):
        return type(batch)(*(shard(v, rank, world_size) for v in batch))
    if isinstance(batch, list | tuple):
        return type(batch)(shard(v, rank, world_size) for v in batch)
    return batch


def _length(data: Iterable[Any], name: str) -> int | None:
    if not isinstance(data, Iterable) or isinstance(data, str | bytes | torch.Tensor):
        raise NaspError(f"{name} is a {type(data).__name__}, not an iterable of batches",
                        f"pass {name}= a DataLoader (or any iterable of batches)")
    try:
        return len(data)  # type: ignore[arg-type]
    except TypeError:
        return None


def _generators(data: Iterable[Any]) -> list[torch.Generator]:
    """The generators an iterable draws its order from besides torch's global one."""
    found = []
    for owner in (data, getattr(data, "sampler", None), getattr(data, "batch_sampler", None),
                  getattr(getattr(data, "batch_sampler", None), "sampler", None)):
        g = getattr(owner, "generator", None)
        if isinstance(g, torch.Generator) and all(g is not f for f in found):
            found.append(g)
    return found


class ModelSearchTask:
    """The search task of ``nasp.search(model=..., train=..., valid=..., loss=...)``."""

    def __init__(self, cfg: SearchConfig, device: torch.device, dist: Dist | None,
                 model: nn.Module, train: Iterable[Any], valid: Iterable[Any], loss: LossFn,
                 metrics: MetricsFn | None = None) -> None:
        if not callable(loss):
            raise NaspError(f"loss is a {type(loss).__name__}, not a function",
                            "pass loss=f with f(model, batch) -> scalar tensor")
        if metrics is not None and not callable(metrics):
            raise NaspError(f"metrics is a {type(metrics).__name__}, not a function",
                            "pass metrics=f with f(model, batch) -> {name: scalar tensor}")
        self.device = device
        self.dist = dist or Dist(device=device)
        self.net = ModelNet(model.to(device), task="model")
        self.space = self.net.space
        self.model = model
        self.train, self.valid = train, valid
        self.loss_fn, self.metrics_fn = loss, metrics
        n_train, n_valid = _length(train, "train"), _length(valid, "valid")
        steps = cfg.max_steps_per_epoch
        if n_train is None and steps is None:
            raise NaspError("train has no len(), so an epoch has no known length",
                            "pass max_steps_per_epoch=N (steps per epoch)")
        self.steps = min(n for n in (n_train, steps) if n is not None)
        if self.steps < 1 or n_valid == 0:
            raise NaspError("train or valid holds no batch", "pass non-empty iterables")
        self.generators = {"train": _generators(train), "valid": _generators(valid)}
        self._check(next(iter(train)))

    def _check(self, batch: Any) -> None:
        """One pass of the first training batch with every candidate running: shapes, the
        loss's type and value, and the candidates' costs, before any step."""
        value = self.net.inspect(lambda: self.loss_fn(self.model, self._prepare(batch)))
        if not isinstance(value, torch.Tensor) or value.numel() != 1 or value.dim() > 1:
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else \
                type(value).__name__
            raise NaspError(f"loss(model, batch) returned {shape}, not a scalar tensor",
                            "reduce it to one number (e.g. .mean())")
        if not torch.isfinite(value.detach()).all():
            raise NaspError(f"loss(model, batch) is {float(value)} on the first training batch",
                            "check the model's initialisation and the data (a NaN in the "
                            "inputs or targets?)")

    def _prepare(self, batch: Any) -> Any:
        return to_device(shard(batch, self.dist.rank, self.dist.world_size), self.device)

    # --- what the loop asks for ---------------------------------------------------------------
    def steps_per_epoch(self) -> int:
        return self.steps

    def batches(self, epoch: int) -> Iterator[tuple[Any, Any]]:
        valid = iter(self.valid)
        for _, tb in zip(range(self.steps), self.train):
            vb = next(valid, _END)
            if vb is _END:  # run out: start the validation batches again (a new order)
                valid = iter(self.valid)
                vb = next(valid, _END)
                if vb is _END:
                    raise NaspError("valid yields no batch", "pass a non-empty iterable")
            yield self._prepare(tb), self._prepare(vb)

    def loss(self, batch: Any, weighting: Weighting) -> torch.Tensor:
        with self.net.bound(weighting):
            return self.loss_fn(self.model, batch)

    def train_loss(self, batch: Any, weighting: Weighting
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = self.loss(batch, weighting)
        return loss, {"loss_sum": loss.detach().float().reshape(()),
                      "count": torch.ones((), device=loss.device)}

    @staticmethod
    def summarize(sums: dict[str, float], prefix: str) -> dict[str, float]:
        n = max(sums.get("count", 0.0), 1.0)
        out = {f"{prefix}_loss": sums["loss_sum"] / n}
        out.update({f"{prefix}_{k[2:]}": v / n for k, v in sums.items() if k.startswith("m_")})
        return out

    @torch.no_grad()
    def evaluate(self, weighting: Weighting) -> dict[str, float]:
        was_training = self.model.training
        self.model.eval()
        total: dict[str, torch.Tensor] = {}
        try:
            with self.net.bound(weighting):
                for batch in self.valid:
                    batch = self._prepare(batch)
                    values = {"loss_sum": self.loss_fn(self.model, batch)}
                    if self.metrics_fn is not None:
                        values.update({f"m_{k}": v for k, v in
                                       self.metrics_fn(self.model, batch).items()})
                    for k, v in values.items():
                        v = v.detach().float().reshape(())
                        total[k] = total[k] + v if k in total else v
                    total["count"] = total.get("count", 0) + torch.ones((), device=self.device)
        finally:
            self.model.train(was_training)
        total = self.dist.sum_metrics(total)
        return self.summarize({k: float(v) for k, v in total.items()}, "valid")

    def genotype_metrics(self, arch: Any) -> dict[str, float]:
        return {}

    def eval_params_m(self, arch: Any) -> float:
        return params_m(fix(self.model, arch))

    def raw_costs(self, kind: str, table: str | None = None) -> dict[str, torch.Tensor]:
        return own_costs(self.net, kind, table)

    def state_dict(self) -> dict[str, Any]:
        return {"space": self.space.signature(),
                "generators": {k: [g.get_state() for g in gs]
                               for k, gs in self.generators.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("space") != self.space.signature():
            raise NaspError("the model passed to resume has other choices than the run's "
                            f"(run: {state.get('space')}; now: {self.space.signature()})",
                            "resume with the model (and data) the search started with")
        for k, gs in self.generators.items():
            saved = state.get("generators", {}).get(k, [])
            if len(saved) != len(gs):
                raise NaspError(f"the {k} batches of this resume draw their order from "
                                f"{len(gs)} generator(s), the run's from {len(saved)}",
                                f"resume with the {k} iterable the search started with")
            for g, s in zip(gs, saved):
                g.set_state(s)
