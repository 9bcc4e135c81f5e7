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

import contextlib
import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nasp.data import DeviceLoader, ImageDataset, load_image_dataset, split_indices
from nasp.device import resolve_device
from nasp.errors import NaspError
from nasp.genotype import Genotype, get_genotype
from nasp.loops.timing import peak_memory_mb
from nasp.models.cnn import EvalCNN, build_eval_model, count_flops, count_params
from nasp.runs import (
    JsonlLog,
    load_checkpoint,
    prepare_run_dir,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_json,
)
from nasp.train_config import TrainConfig

EpochCallback = Callable[[int, dict[str, Any]], None]


def default_run_dir(cfg: TrainConfig) -> Path:
    name = Path(cfg.genotype).name if Path(cfg.genotype).exists() else cfg.genotype
    return Path("runs") / f"train-{name.removesuffix('.json')}-{cfg.data}-s{cfg.seed}"


class Data:
    """Train / validation / test loaders on the device. With ``valid_portion`` 0 the
    validation stream is the test set (the papers train on the whole training set)."""

    def __init__(self, cfg: TrainConfig, ds: ImageDataset, device: torch.device,
                 channels_last: bool) -> None:
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
                                  cutout=cfg.cutout, **common)
        plain = dict(shuffle=False, drop_last=False, seed=cfg.seed, crop_padding=0, hflip=False,
                     cutout=0, **common)
        self.valid = DeviceLoader(vx, vy, cfg.eval_batch_size, **plain)
        self.test = DeviceLoader(ds.test_x, ds.test_y, cfg.eval_batch_size, **plain)
        self.num_train = len(y)


def make_scheduler(cfg: TrainConfig, optimizer: torch.optim.Optimizer):
    if cfg.lr_schedule == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, 1, gamma=cfg.lr_gamma)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs, eta_min=0.0)


def autocast(device: torch.device, enabled: bool):
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16)


@torch.no_grad()
def evaluate(model: nn.Module, loader: DeviceLoader, device: torch.device,
             amp: bool) -> dict[str, float]:
    """Mean cross-entropy (no label smoothing) and accuracy in eval mode; one sync at the end."""
    was_training = model.training
    model.eval()
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    count = 0
    for x, y in loader.epoch(0):
        with autocast(device, amp):
            logits = model(x)
        loss_sum += F.cross_entropy(logits.float(), y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
        count += y.numel()
    model.train(was_training)
    n = max(count, 1)
    return {"loss": float(loss_sum) / n, "acc": float(correct) / n}


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
    after each epoch's checkpoint is written."""
    cfg = config
    device = resolve_device(cfg.device)
    amp = device.type == "cuda" if cfg.amp is None else cfg.amp
    channels_last = device.type == "cuda" if cfg.channels_last is None else cfg.channels_last
    genotype = None if resume else get_genotype(cfg.genotype, "cnn")  # fail before any I/O
    run_dir = prepare_run_dir(Path(cfg.out) if cfg.out else default_run_dir(cfg),
                              resume=resume, overwrite=overwrite)
    ckpt = load_checkpoint(run_dir / "checkpoint.pt", device) if resume else None
    if ckpt is not None:
        # the genotype a run started with travels in its checkpoint, so a moved or edited
        # file cannot change a resumed run
        genotype = Genotype.from_dict(ckpt["genotype"])
    assert genotype is not None
    if genotype.task != "cnn":
        raise NaspError(f"genotype {cfg.genotype!r} is a recurrent cell",
                        "train it with `nasp train --task lm`, or pass a CNN genotype")
    ds = dataset if dataset is not None else load_image_dataset(cfg.data, cfg.data_root)
    if min(ds.image_size) < 8:
        raise NaspError(f"images of {ds.image_size} are too small for a network with two "
                        "reductions", "use images of at least 8x8 pixels")

    seed_everything(cfg.seed)
    model = build_eval_model(genotype, ds.channels, ds.num_classes, ds.image_size,
                             channels=cfg.channels, layers=cfg.layers, auxiliary=cfg.auxiliary)
    # what load_model needs to rebuild the network without the data
    network = {"genotype": genotype.to_dict(), "input_shape": list(ds.shape),
               "num_classes": ds.num_classes, "channels": cfg.channels, "layers": cfg.layers,
               "auxiliary": cfg.auxiliary}
    params_m = count_params(model) / 1e6
    flops_m = count_flops(model, ds.shape) / 1e6
    model = model.to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    data = Data(cfg, ds, device, channels_last)
    optimizer = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = make_scheduler(cfg, optimizer)
    metrics_log = JsonlLog(run_dir / "metrics.jsonl")
    start_epoch, wall, best = 0, 0.0, {"valid_acc": -1.0, "epoch": -1}
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch, wall, best = ckpt["epoch"], ckpt["wall_time"], ckpt["best"]
        metrics_log.truncate_from(start_epoch)
        if log:
            tqdm.write(f"resuming {run_dir} at epoch {start_epoch + 1}/{cfg.epochs}")
    else:
        metrics_log.truncate_from(-10)  # a fresh run starts a fresh file
        write_json(run_dir / "config.json", {"command": "train", "task": "cnn", **cfg.to_dict()})
    if log:
        tqdm.write(f"{genotype}\n{params_m:.3f}M parameters, {flops_m:.1f}M multiply-adds, "
                   f"{data.num_train} training images, device {device}")

    steps = len(data.train)
    if cfg.max_steps_per_epoch:
        steps = min(steps, cfg.max_steps_per_epoch)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed shapes: pick the fastest kernels once
        torch.cuda.reset_peak_memory_stats(device)
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        model.train()
        model.drop_path_prob = cfg.drop_path_prob * epoch / cfg.epochs
        lr = optimizer.param_groups[0]["lr"]
        loss_sum = torch.zeros((), device=device)
        correct = torch.zeros((), device=device, dtype=torch.long)
        bad = torch.zeros((), device=device, dtype=torch.bool)
        seen = 0
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        for step, (x, y) in enumerate(itertools.islice(data.train.epoch(epoch), steps)):
            with autocast(device, amp):
                out = model(x)
                logits, aux = out if isinstance(out, tuple) else (out, None)
                loss = F.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
                total = loss
                if aux is not None:
                    total = total + cfg.auxiliary_weight * F.cross_entropy(
                        aux, y, label_smoothing=cfg.label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            loss = loss.detach()
            loss_sum += loss.float() * y.numel()
            correct += (logits.detach().argmax(1) == y).sum()
            bad |= ~torch.isfinite(loss)
            seen += y.numel()
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                _check_finite(bad, epoch)
                bar.set_postfix(loss=f"{float(loss_sum) / seen:.4f}",
                                acc=f"{float(correct) / seen:.4f}", refresh=False)
            bar.update(1)
        bar.close()
        scheduler.step()
        _check_finite(bad, epoch)
        valid = evaluate(model, data.valid, device, amp)
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        record = {"epoch": epoch, "train_loss": float(loss_sum) / max(seen, 1),
                  "train_acc": float(correct) / max(seen, 1), "valid_loss": valid["loss"],
                  "valid_acc": valid["acc"], "lr": lr, "drop_path_prob": model.drop_path_prob,
                  "epoch_time": epoch_time, "wall_time": wall,
                  "peak_mem_mb": peak_memory_mb(device)}
        if not math.isfinite(record["valid_loss"]):
            raise NaspError(f"the validation loss became nan at epoch {epoch + 1}",
                            "lower --lr, or keep --grad-clip on")
        if valid["acc"] > best["valid_acc"]:
            best = {"valid_acc": valid["acc"], "epoch": epoch}
            save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(), "epoch": epoch,
                                                  "valid_acc": valid["acc"], **network})
        metrics_log.append(record)
        save_checkpoint(run_dir / "checkpoint.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "best": best,
            "rng": rng_state(), "wall_time": wall, "config": cfg.to_dict(), **network})
        if log:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} train_loss {record['train_loss']:.4f} "
                       f"train_acc {record['train_acc']:.4f} valid_loss {valid['loss']:.4f} "
                       f"valid_acc {valid['acc']:.4f} lr {lr:.5f} ({epoch_time:.1f}s)")
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)

    test = evaluate(model, data.test, device, amp)
    result: dict[str, Any] = {
        "test_acc": test["acc"], "test_loss": test["loss"], "best_valid_acc": best["valid_acc"],
        "best_epoch": best["epoch"], "params_m": params_m, "flops_m": flops_m,
        "genotype": genotype.to_dict(), "epochs": cfg.epochs, "train_time_s": wall,
        "data": cfg.data, "seed": cfg.seed, "peak_mem_mb": peak_memory_mb(device)}
    if data.has_valid and (run_dir / "best.pt").exists():
        # a checkpoint chosen on held-out data may be tested honestly; one chosen on the test
        # set (valid_portion 0) may not, so only the final weights' accuracy is reported then
        model.load_state_dict(load_checkpoint(run_dir / "best.pt", device)["model"])
        result["best_test_acc"] = evaluate(model, data.test, device, amp)["acc"]
    write_json(run_dir / "result.json", result)
    if log:
        tqdm.write(f"test_acc {result['test_acc']:.4f} test_loss {result['test_loss']:.4f} "
                   f"-> {run_dir / 'result.json'}")
    return result


def _check_finite(bad: torch.Tensor, epoch: int) -> None:
    if bool(bad):
        raise NaspError(f"loss became nan at epoch {epoch + 1}",
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
