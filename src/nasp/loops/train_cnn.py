"""Train a CNN genotype's evaluation network from scratch (DARTS/NASP evaluation protocol).

One readable loop: SGD with momentum, cosine or step learning-rate schedule, drop-path rising
linearly over the epochs, the auxiliary head's loss, gradient clipping. Metrics stay on the
device during an epoch (no host sync per step) and are read every ``log_every`` steps and at
the epoch's end. Every epoch appends to ``metrics.jsonl`` and writes ``checkpoint.pt``
atomically, so a resumed run continues at the epoch boundary and ends bit-identical (on the
CPU) to one that was never interrupted. ``best.pt`` holds the weights of the best validation
epoch; ``result.json`` the test accuracy of the final weights.
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nasp.compiled import compile_mode_for, compile_network, mark_step, resolve_compile
from nasp.configs import TrainConfig
from nasp.data import DeviceLoader, ImageDataset, load_image_dataset, split_indices
from nasp.device import (
    autocast,
    environment,
    memory_format_name,
    resolve_amp,
    resolve_memory_format,
    tune_cpu_allocator,
)
from nasp.distributed import Dist, check_resume_world, init_distributed
from nasp.errors import NaspError
from nasp.export.record import cnn_record, own_record
from nasp.genotype import Genotype, get_genotype
from nasp.loops.timing import peak_memory_mb
from nasp.models.cnn import EvalCNN, build_eval_model, count_flops, count_params
from nasp.models.fixed import fix
from nasp.run_folder import RunFolder, load_checkpoint, rng_state, seed_everything, set_rng_state
from nasp.spaces.model import ModelArch, build_model, read_own_search

EpochCallback = Callable[[int, dict[str, Any]], None]


class Data:
    """Train / validation / test loaders on the device. With ``valid_portion`` 0 the
    validation stream is the test set (the papers train on the whole training set)."""

    def __init__(self, cfg: TrainConfig, ds: ImageDataset, device: torch.device,
                 channels_last: bool, d: Dist | None = None) -> None:
        d = d or Dist(device=device)
        x, y = ds.train_x, ds.train_y
        if cfg.max_train_samples and cfg.max_train_samples < len(y):
            keep, _ = split_indices(y, cfg.max_train_samples / len(y), cfg.seed)
            x, y = x[keep], y[keep]
        self.has_valid = cfg.valid_portion > 0
        if self.has_valid:
            train_idx, valid_idx = split_indices(y, 1.0 - cfg.valid_portion, cfg.seed)
            vx, vy = x[valid_idx], y[valid_idx]
            x, y = x[train_idx], y[train_idx]
        else:
            vx, vy = ds.test_x, ds.test_y
        if len(y) < cfg.batch_size:
            raise NaspError(f"only {len(y)} training images, fewer than one batch of "
                            f"{cfg.batch_size}", "lower --batch-size or use more data")
        side = int(x.shape[-1])
        pad = cfg.crop_padding if cfg.crop_padding is not None else (4 if side >= 32 else 2)
        hflip = ds.hflip if cfg.hflip is None else cfg.hflip
        common = dict(mean=ds.mean, std=ds.std, device=device, channels_last=channels_last)
        self.train = DeviceLoader(x, y, cfg.batch_size, shuffle=True, drop_last=True,
                                  seed=cfg.seed, crop_padding=pad, hflip=hflip,
                                  cutout=cfg.cutout, shard=(d.rank, d.world_size), **common)
        plain = dict(shuffle=False, drop_last=False, seed=cfg.seed, crop_padding=0, hflip=False,
                     cutout=0, **common)
        # each rank evaluates a part of the split; the sums are added up (``evaluate``)
        lo, hi = d.eval_range(len(vy))
        self.valid = DeviceLoader(vx[lo:hi], vy[lo:hi], cfg.eval_batch_size, **plain)
        lo, hi = d.eval_range(len(ds.test_y))
        self.test = DeviceLoader(ds.test_x[lo:hi], ds.test_y[lo:hi], cfg.eval_batch_size,
                                 **plain)
        self.num_train = len(y)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=0.0)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, device: torch.device,
             amp: bool, d: Dist | None = None) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and accuracy in eval mode; one sync at the end.
    With several ranks each evaluates its part of the split and the sums are added up."""
    was_training = model.training
    model.eval()
    sums = {"loss_sum": torch.zeros((), device=device, dtype=torch.float64),
            "correct": torch.zeros((), device=device, dtype=torch.float64),
            "count": torch.zeros((), device=device, dtype=torch.float64)}
    for x, y in loader.epoch(0):
        with autocast(device, amp):
            logits = model(x)
        sums["loss_sum"] += F.cross_entropy(logits.float(), y, reduction="sum")
        sums["correct"] += (logits.argmax(1) == y).sum()
        sums["count"] += y.numel()
    model.train(was_training)
    if d is not None:
        sums = d.sum_metrics(sums)
    n = max(float(sums["count"]), 1.0)
    return {"loss": float(sums["loss_sum"]) / n, "acc": float(sums["correct"]) / n}


def train(
    config: TrainConfig,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    log: bool = True,
    dataset: ImageDataset | None = None,
    on_epoch_end: EpochCallback | None = None,
) -> dict[str, Any]:
    """Train (or, with ``resume``, continue) the network of ``config.genotype``; returns the
    result record that is also written to ``<out>/result.json``.

    ``progress`` shows progress bars, ``log`` prints one line per epoch; ``dataset`` skips
    loading when the caller already holds the data; ``on_epoch_end(epoch, record)`` is called
    after each epoch's checkpoint is written. Under torchrun (or inside a process group) every
    rank trains on its shard of each global batch with averaged gradients; rank 0 writes."""
    cfg = config
    d = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
    folder = None
    try:
        with d.setup():
            d.local_batch(cfg.batch_size)
            folder = RunFolder.open(cfg.out or cfg.default_out(), resume=resume,
                                    overwrite=overwrite, command="nasp train", writer=d.is_main)
            run = _setup(cfg, folder, d, dataset)
        return _train(cfg, folder, d, run, progress and d.is_main, log and d.is_main,
                      on_epoch_end)
    finally:
        if folder is not None:
            folder.close()
        d.close()


@dataclass
class _Run:
    """What the set-up of a training run hands the loop."""

    genotype: Any  # a Genotype, or a user model's arch
    model: nn.Module
    step_model: nn.Module  # ``model``, or its compiled form (same parameters)
    network: dict[str, Any]
    data: Data
    optimizer: torch.optim.Optimizer
    scheduler: Any
    amp: bool
    params_m: float
    flops_m: float
    ckpt: dict[str, Any] | None


def _setup(cfg: TrainConfig, folder: RunFolder, d: Dist, dataset: ImageDataset | None) -> _Run:
    device = d.device
    ckpt = folder.load_checkpoint(device) if folder.resumed else None
    if ckpt is not None:
        check_resume_world(ckpt.get("world_size"), d.world_size)
    # the genotype (or a user model's arch) a run started with travels in its checkpoint, so
    # a moved or edited file cannot change a resumed run
    own = _own_model(cfg, ckpt)
    if own is not None:
        genotype: Any = own[1]
    else:
        genotype = Genotype.from_dict(ckpt["genotype"]) if ckpt is not None else \
            get_genotype(cfg.genotype, "cnn")
        if genotype.task != "cnn":
            raise NaspError(f"genotype {cfg.genotype!r} is a recurrent cell",
                            "train it with `nasp train --task lm`, or pass a CNN genotype")
    ds = dataset if dataset is not None else load_image_dataset(cfg.data, cfg.data_root)
    if min(ds.image_size) < 8:
        raise NaspError(f"images of {ds.image_size} are too small for a network with two "
                        "reductions", "use images of at least 8x8 pixels")
    if device.type == "cpu":  # large per-step tensors: see tune_cpu_allocator
        tune_cpu_allocator()
    amp = resolve_amp(device, cfg.amp)
    fmt = resolve_memory_format(device, cfg.memory_format)
    cfg.memory_format = memory_format_name(fmt)  # recorded: a resume computes as before
    seed_everything(cfg.seed)
    if own is not None:  # the fixed network of the user's model, initialised afresh
        model: nn.Module = fix(build_model(own[0], ds.channels, ds.num_classes), genotype,
                               fresh=True)
        network = own_record(genotype, own[0], ds.shape, ds.classes, ds.mean, ds.std, cfg.data)
    else:
        model = build_eval_model(genotype, ds.channels, ds.num_classes, ds.image_size,
                                 channels=cfg.channels, layers=cfg.layers,
                                 auxiliary=cfg.auxiliary)
        # what nasp.load needs to rebuild the network and its preprocessing without the data
        network = cnn_record(genotype, ds.shape, ds.classes, ds.mean, ds.std, cfg.channels,
                             cfg.layers, cfg.auxiliary, cfg.data)
    params_m = count_params(model) / 1e6
    flops_m = count_flops(model, ds.shape) / 1e6
    model = model.to(device).to(memory_format=fmt)
    data = Data(cfg, ds, device, fmt == torch.channels_last, d)
    # recorded resolved, so a resume computes as the run began (the other mode is refused)
    cfg.compile = resolve_compile(cfg.compile, device)
    step_model: nn.Module = model
    if cfg.compile == "on":  # the architecture is fixed: the whole network is one graph
        step_model = compile_network(model, compile_mode_for(device, "train"))
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    folder.start()
    return _Run(genotype, model, step_model, network, data, optimizer, scheduler, amp, params_m,
                flops_m, ckpt)


def _own_model(cfg: TrainConfig, ckpt: dict[str, Any] | None) -> tuple[str, Any] | None:
    """(``--space`` reference, arch) of a user model to train (``--arch RUN``), else None."""
    if ckpt is not None:
        return (ckpt["space"], ModelArch(ckpt["arch"])) if "arch" in ckpt else None
    if cfg.arch is None:
        return None
    space, arch, _ = read_own_search(cfg.arch)
    return space, arch


def _train(cfg: TrainConfig, folder: RunFolder, d: Dist, run: _Run, progress: bool, log: bool,
           on_epoch_end: EpochCallback | None) -> dict[str, Any]:
    model, data, optimizer, scheduler = run.model, run.data, run.optimizer, run.scheduler
    device, amp, net = d.device, run.amp, run.step_model
    start_epoch, wall, best = 0, 0.0, {"valid_acc": -1.0, "epoch": -1}
    history: list[dict[str, Any]] = []
    if run.ckpt is not None:
        ckpt = run.ckpt
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch, wall, best = ckpt["epoch"], ckpt["wall_time"], ckpt["best"]
        history = ckpt["history"]
        if log:
            tqdm.write(f"resuming {folder.path} at epoch {start_epoch + 1}/{cfg.epochs}")
    folder.write_json("config.json", cfg.record())  # a resume may change safe options
    folder.sync_logs({"metrics.jsonl": history})
    if cfg.tensorboard:
        folder.log_to_tensorboard({"metrics.jsonl": history}, start_epoch)
    d.broadcast_state(model)  # every rank starts from rank 0's weights
    if log:
        tqdm.write(f"{run.genotype}\n{run.params_m:.3f}M parameters, {run.flops_m:.1f}M "
                   f"multiply-adds, {data.num_train} training images, device {device}"
                   + (f", {d.world_size} processes" if d.enabled else ""))

    steps = len(data.train)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        torch.cuda.reset_peak_memory_stats(device)
    params = list(model.parameters())
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        drop_prob = cfg.drop_path_prob * epoch / cfg.epochs
        # a compiled network takes it as a tensor, an input of its graph (see drop_path)
        model.drop_path_prob = drop_prob if net is model else torch.tensor(drop_prob,
                                                                           device=device)
        lr = optimizer.param_groups[0]["lr"]
        sums = {"loss_sum": torch.zeros((), device=device, dtype=torch.float64),
                "correct": torch.zeros((), device=device, dtype=torch.float64),
                "count": torch.zeros((), device=device, dtype=torch.float64)}
        bad = torch.zeros((), device=device, dtype=torch.bool)
        progress_bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                            disable=not progress, leave=False, dynamic_ncols=True)
        for step, (x, y) in enumerate(itertools.islice(data.train.epoch(epoch), steps)):
            mark_step(net)
            with autocast(device, amp):
                out = net(x)
                logits, aux = out if isinstance(out, tuple) else (out, None)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                total = loss
                if aux is not None:
                    total = total + cfg.auxiliary_weight * F.cross_entropy(
                        aux, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            d.reduce_gradients(params)
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            loss = loss.detach()
            sums["loss_sum"] += loss.double() * y.numel()
            sums["correct"] += (logits.detach().argmax(1) == y).sum()
            sums["count"] += y.numel()
            bad |= ~torch.isfinite(loss)
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                if d.any_failed(bool(bad)):  # every rank stops, not only the one that saw it
                    raise _non_finite(epoch)
                n = float(sums["count"])
                progress_bar.set_postfix(loss=f"{float(sums['loss_sum']) / n:.4f}",
                                         acc=f"{float(sums['correct']) / n:.4f}", refresh=False)
            progress_bar.update(1)
        progress_bar.close()
        scheduler.step()
        sums = {k: float(v) for k, v in d.sum_metrics(sums).items()}
        d.average_buffers(model)  # each rank's statistics saw only its shard
        valid = evaluate(net, data.valid, device, amp, d)
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        seen = max(sums["count"], 1.0)
        record = {"epoch": epoch, "train_loss": sums["loss_sum"] / seen,
                  "train_acc": sums["correct"] / seen, "valid_loss": valid["loss"],
                  "valid_acc": valid["acc"], "lr": lr, "drop_path_prob": drop_prob,
                  "epoch_time": epoch_time, "wall_time": wall,
                  "peak_mem_mb": peak_memory_mb(device)}
        if not math.isfinite(record["valid_loss"]):
            raise NaspError(f"the validation loss became nan at epoch {epoch + 1}",
                            "lower --lr, or keep --grad-clip on")
        if valid["acc"] > best["valid_acc"]:
            best = {"valid_acc": valid["acc"], "epoch": epoch}
            folder.save_checkpoint({"model": model.state_dict(), "epoch": epoch,
                                    "valid_acc": valid["acc"], **run.network}, "best.pt")
        history.append(record)
        folder.end_epoch({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best": best,
            "rng": rng_state(), "wall_time": wall, "history": history,
            "world_size": d.world_size, **run.network}, {"metrics.jsonl": record})
        if log:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} train_loss {record['train_loss']:.4f} "
                       f"train_acc {record['train_acc']:.4f} valid_loss {valid['loss']:.4f} "
                       f"valid_acc {valid['acc']:.4f} lr {lr:.5f} ({epoch_time:.1f}s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    test = evaluate(net, data.test, device, amp, d)
    result: dict[str, Any] = {
        "test_acc": test["acc"], "test_loss": test["loss"], "best_valid_acc": best["valid_acc"],
        "best_epoch": best["epoch"], "params_m": run.params_m, "flops_m": run.flops_m,
        getattr(run.genotype, "KEY", "genotype"): run.genotype.to_dict(), "epochs": cfg.epochs,
        "train_time_s": wall,
        "data": cfg.data, "seed": cfg.seed, "peak_mem_mb": peak_memory_mb(device),
        "compile": cfg.compile,
        "environment": environment(device, d.world_size)}
    if data.has_valid and best["epoch"] >= 0:
        # a checkpoint chosen on held-out data may be tested honestly; one chosen on the test
        # set (valid_portion 0) may not, so only the final weights' accuracy is reported then
        if d.is_main:
            model.load_state_dict(folder.load_checkpoint(device, "best.pt")["model"])
        d.broadcast_state(model)
        result["best_test_acc"] = evaluate(net, data.test, device, amp, d)["acc"]
    folder.write_json("result.json", result)
    if log:
        tqdm.write(f"test_acc {result['test_acc']:.4f} test_loss {result['test_loss']:.4f} "
                   f"-> {folder / 'result.json'}")
    return result


def _non_finite(epoch: int) -> NaspError:
    return NaspError(f"loss became nan at epoch {epoch + 1}",
                     "lower --lr, keep --grad-clip on, or turn off --amp")


def load_model(run_dir: str | Path, which: str = "best", device: str = "cpu") -> EvalCNN:
    """The trained network of a ``nasp train`` run folder, in eval mode: the weights of
    ``best.pt`` (best validation epoch) or ``checkpoint.pt`` (last epoch)."""
    if which not in ("best", "checkpoint"):
        raise NaspError(f"unknown checkpoint {which!r}", "use 'best' or 'checkpoint'")
    state = load_checkpoint(Path(run_dir) / f"{which}.pt", device)
    c, h, w = state["input_shape"]
    model = build_eval_model(Genotype.from_dict(state["genotype"]), c, state["num_classes"],
                             (h, w), channels=state["channels"], layers=state["layers"],
                             auxiliary=state["auxiliary"])
    model.load_state_dict(state["model"])
    return model.to(device).eval()
