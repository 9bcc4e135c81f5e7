"""The search loop, the same for every strategy and task.

Per iteration: ``strategy.arch_step`` on a (train, validation) batch pair, then one weight step
on the weighting the strategy hands out. The loop never asks which strategy runs. Per epoch it
writes metrics, the architecture parameters, the current genotype and an atomic checkpoint;
a resumed search continues at the epoch boundary and ends exactly as an uninterrupted one.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nasp.config import SearchConfig
from nasp.device import resolve_device
from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.loops.timing import PhaseTimer, peak_memory_mb
from nasp.runs import (
    JsonlLog,
    load_checkpoint,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_json,
)
from nasp.spaces import get_space
from nasp.strategies import ArchContext, Strategy, get_strategy
from nasp.tasks import build_task

EpochCallback = Callable[[int, dict[str, Any]], None]


@dataclass
class SearchResult:
    genotype: Genotype
    metrics: list[dict[str, Any]]
    run_dir: Path | None
    strategy: Strategy
    result: dict[str, Any]




def build_strategy(cfg: SearchConfig, device: torch.device) -> Strategy:
    options = dict(seed=cfg.seed, arch_lr=cfg.arch_lr, arch_betas=cfg.arch_betas,
                   arch_weight_decay=cfg.arch_weight_decay, lambda_params=cfg.lambda_params,
                   darts_order=cfg.darts_order, epochs=cfg.epochs)
    options.update(cfg.strategy_options)
    return get_strategy(cfg.strategy)(get_space(cfg.space), device, **options)


def _to_float(sums: dict[str, torch.Tensor]) -> dict[str, float]:
    return {k: float(v) for k, v in sums.items()}


def _arch_record(epoch: int, strategy: Strategy) -> dict[str, Any]:
    cells = {}
    for name, mats in strategy.snapshot().items():
        cell = strategy.cells[name]
        cells[name] = {"ops": list(cell.ops), "edges": [list(e) for e in cell.edges],
                       "weights": {k: v.detach().float().cpu().tolist() for k, v in mats.items()}}
    return {"epoch": epoch, "strategy": strategy.name, "cells": cells}


def _reset_weights(model: nn.Module) -> None:
    for m in model.modules():
        if m is not model and hasattr(m, "reset_parameters"):
            m.reset_parameters()


def _restart_schedule(
    optimizer: torch.optim.Optimizer, epochs: int, lr_min: float
) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """A new cosine over ``epochs`` from the initial learning rate; a resume restores its state
    (``T_max`` included) from the checkpoint like the run's first schedule."""
    for group in optimizer.param_groups:
        group["lr"] = group["initial_lr"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=lr_min)


def run_search(
    cfg: SearchConfig,
    run_dir: Path | None = None,
    resume: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
) -> SearchResult:
    """Run (or resume) one search; with ``run_dir`` every record is written there."""
    device = resolve_device(cfg.device)
    seed_everything(cfg.seed)
    task = build_task(cfg, device)
    strategy = build_strategy(cfg, device)
    model = task.model
    weights = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(weights, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, cfg.epochs,
                                                           eta_min=cfg.lr_min)
    ctx = ArchContext(loss=task.loss, weights=weights, optimizer=optimizer,
                      buffers=list(model.buffers()))
    metrics_log = JsonlLog(run_dir / "metrics.jsonl") if run_dir else None
    arch_log = JsonlLog(run_dir / "arch.jsonl") if run_dir else None
    start_epoch, wall, totals = 0, 0.0, {"time_arch": 0.0, "time_forward": 0.0,
                                         "time_backward": 0.0}
    if resume:
        if run_dir is None:
            raise NaspError("resume needs a run folder", "pass --resume RUN_FOLDER")
        ckpt = load_checkpoint(run_dir / "checkpoint.pt", device)
        model.load_state_dict(ckpt["model"])
        strategy.load_state_dict(ckpt["strategy"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        task.load_state_dict(ckpt["task"])
        set_rng_state(ckpt["rng"])
        start_epoch, wall, totals = ckpt["epoch"], ckpt["wall_time"], ckpt["totals"]
        for log in (metrics_log, arch_log):
            log.truncate_from(start_epoch)  # type: ignore[union-attr]
    elif arch_log is not None:
        for log in (metrics_log, arch_log):
            log.truncate_from(-10)  # a fresh run starts fresh files
        arch_log.append(_arch_record(-1, strategy))

    timer = PhaseTimer(device)
    history = metrics_log.read() if metrics_log else []
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    epoch = start_epoch
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        strategy.start_epoch(epoch, cfg.epochs)
        if strategy.weights_to_reset():
            _reset_weights(model)
            optimizer.state.clear()
            cycle = strategy.weight_schedule_epochs()
            if cycle:  # a fresh network starts a fresh learning-rate cosine (random search)
                scheduler = _restart_schedule(optimizer, cycle, cfg.lr_min)
        sums: dict[str, torch.Tensor] = {}
        bad = torch.zeros((), dtype=torch.bool, device=device)
        steps = task.steps_per_epoch()
        bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
                   leave=False, dynamic_ncols=True)
        timer.start()
        for step, (train_batch, val_batch) in enumerate(task.batches(epoch)):
            strategy.arch_step(ctx, train_batch, val_batch)
            timer.lap("time_arch")
            optimizer.zero_grad(set_to_none=True)
            loss, batch_sums = task.train_loss(train_batch, strategy.weighting())
            timer.lap("time_forward")
            loss.backward()
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(weights, cfg.grad_clip)
            optimizer.step()
            timer.lap("time_backward")
            bad |= ~torch.isfinite(loss.detach())
            for k, v in batch_sums.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                if bool(bad):
                    raise NaspError(
                        f"the training loss became {float(loss)} at epoch {epoch + 1}, "
                        f"step {step + 1}", "lower --lr or --arch-lr, or keep --grad-clip on")
                bar.set_postfix(task.summarize(_to_float(sums), "train"), refresh=False)
            bar.update(1)
            timer.start()
        bar.close()
        phases = timer.collect()
        scheduler.step()
        record: dict[str, Any] = {"epoch": epoch}
        record.update(task.summarize(_to_float(sums), "train"))
        record.update(task.evaluate(strategy.eval_weighting()))
        strategy.end_epoch(epoch, cfg.epochs, record)
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        for k in totals:
            totals[k] += phases.get(k, 0.0)
        record.update({"lr": optimizer.param_groups[0]["lr"], **{k: phases.get(k, 0.0)
                       for k in totals}, "epoch_time": epoch_time, "wall_time": wall,
                       "peak_mem_mb": peak_memory_mb(device)})
        if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
            raise NaspError(f"a metric became non-finite at epoch {epoch + 1}: {record}",
                            "lower --lr or --arch-lr")
        history.append(record)
        geno = strategy.genotype()
        if progress:
            shown = {k: round(v, 4) for k, v in record.items()
                     if k.startswith(("train_", "valid_"))}
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} {shown} {geno}")
        if run_dir is not None:
            metrics_log.append(record)  # type: ignore[union-attr]
            arch_log.append(_arch_record(epoch, strategy))  # type: ignore[union-attr]
            write_json(run_dir / "genotype.json", geno.to_dict())
            save_checkpoint(run_dir / "checkpoint.pt", {
                "model": model.state_dict(), "strategy": strategy.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "task": task.state_dict(), "rng": rng_state(), "epoch": epoch + 1,
                "wall_time": wall, "totals": totals, "config": cfg.to_dict()})
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if strategy.finished():
            break

    geno = strategy.genotype()
    last = history[-1] if history else {}
    result = {"genotype": geno.to_dict(), "strategy": cfg.strategy, "space": cfg.space,
              "epochs": last.get("epoch", -1) + 1, "search_time_s": wall, **totals,
              "peak_mem_mb": peak_memory_mb(device)}
    for key in ("valid_acc", "valid_loss", "valid_ppl"):
        if key in last:
            result[key] = last[key]
    result["eval_params_m"] = eval_params_m(geno, task)
    if run_dir is not None:
        write_json(run_dir / "genotype.json", geno.to_dict())
        write_json(run_dir / "result.json", result)
    return SearchResult(geno, history, run_dir, strategy, result)


def eval_params_m(genotype: Genotype, task: Any) -> float | None:
    """Parameters (M) of the evaluation network the genotype defines, at the paper's size for
    the task's data (CNN: 20 cells, C=36; LM: emsize = nhid = 850), for size-vs-λ plots."""
    try:
        if genotype.task == "lm":
            from nasp.models.rnn import count_lm_params

            ntokens = getattr(task, "ntokens", 10000)
            return count_lm_params(genotype, ntokens=ntokens) / 1e6
        from nasp.models import build_eval_model, count_params

        ds = task.dataset
        net = build_eval_model(genotype, ds.channels, ds.num_classes, ds.image_size[-1],
                               channels=36, layers=20, auxiliary=False)
        return count_params(net) / 1e6
    except ImportError:
        return None
