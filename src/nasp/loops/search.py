"""The search loop, the same for every strategy and task, on one process or several.

Per iteration: ``strategy.arch_step`` on a (train, validation) batch pair, with batch-norm
running statistics frozen (``nasp.supernet.freeze``), then one weight step on the weighting the
strategy hands out. The loop never asks which strategy runs. Per epoch it checkpoints (atomically;
the checkpoint carries the epoch's records) and then appends metrics, the architecture
parameters and the current genotype to the run folder; a resumed search continues at the epoch
boundary and ends exactly as an uninterrupted one.

Data parallel (``torchrun --nproc-per-node N -m nasp search``, or ``nasp.search`` inside a
process group): ``--batch-size`` stays the global batch; each rank reads its shard; the weight
gradients that exist - only the ops that ran, the same on every rank because the architecture
is - are averaged in a few buckets, the strategy averages its architecture gradients through
``ArchContext.reduce``, so weights and architecture stay bit-identical on every rank without a
DDP wrapper. Batch-norm statistics are averaged and metrics summed before every evaluation;
only rank 0 writes the run folder.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from nasp.compiled import Compiler, attach, compile_mode_for, resolve_compile
from nasp.configs import SearchConfig
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
from nasp.loops.timing import PhaseTimer, peak_memory_mb
from nasp.run_folder import RunFolder, rng_state, seed_everything, set_rng_state
from nasp.spaces import SPACES
from nasp.spaces.model import ModelArch
from nasp.strategies import ArchContext, Strategy, build_strategy
from nasp.supernet.freeze import batch_norms, frozen_batch_stats
from nasp.tasks import build_task, check_batches

EpochCallback = Callable[[int, dict[str, Any]], None]
TaskFactory = Callable[[SearchConfig, torch.device, Dist], Any]
PHASES = ("time_arch", "time_forward", "time_backward")


@dataclass
class SearchResult:
    """The found genotype (for a user's own model: its arch), the per-epoch records, the run
    folder, and the strategy and network as they ended (the supernet, or the user's model,
    trained in place)."""

    genotype: Any
    metrics: list[dict[str, Any]]
    run_dir: Path | None
    strategy: Strategy
    result: dict[str, Any]
    model: nn.Module

    @property
    def arch(self) -> dict[str, Any] | None:
        """A user model's architecture as a plain dict label -> candidate name (``Choice``) or
        sorted input indices (``InputChoice``); ``None`` for the built-in spaces (their record
        is ``genotype``)."""
        return self.genotype.to_dict() if isinstance(self.genotype, ModelArch) else None


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


def _cosine(optimizer: torch.optim.Optimizer, epochs: int, lr_min: float
            ) -> torch.optim.lr_scheduler.CosineAnnealingLR:
    """A cosine over ``epochs`` from the initial learning rate; a resume restores its state
    (``T_max`` included) from the checkpoint."""
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
        group["lr"] = group["initial_lr"]
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, epochs, eta_min=lr_min)


def run_search(
    cfg: SearchConfig,
    out: str | Path | None = None,
    *,
    resume: bool = False,
    overwrite: bool = False,
    progress: bool = True,
    on_epoch_end: EpochCallback | None = None,
    task_factory: TaskFactory | None = None,
) -> SearchResult:
    """Run (or ``resume``) one search; with ``out`` every record is written to that folder.
    ``task_factory(cfg, device, dist)`` builds the task instead of ``cfg.task``'s (a user's
    model and batches from Python).

    Everything a user can get wrong (options, strategy options, data files, a user model's
    choices and loss) is checked before the folder is created or touched."""
    d = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
    folder = None
    threads = torch.get_num_threads()  # the caller's, restored at the end
    try:
        with d.setup():
            check_batches(cfg, d)  # the task's batches split evenly over the ranks
            if out is not None:
                folder = RunFolder.open(out, resume=resume, overwrite=overwrite,
                                        command="nasp search", writer=d.is_main)
            run = _setup(cfg, folder, d, task_factory)
        return _loop(cfg, folder, d, run, progress and d.is_main, on_epoch_end)
    finally:
        if folder is not None:
            folder.close()
        d.close()
        torch.set_num_threads(threads)


@dataclass
class _Run:
    """What the set-up of a search hands the loop."""

    strategy: Strategy
    task: Any
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    ckpt: dict[str, Any] | None


def _setup(cfg: SearchConfig, folder: RunFolder | None, d: Dist,
           task_factory: TaskFactory | None = None) -> _Run:
    if d.device.type == "cpu":  # large per-step tensors: see tune_cpu_allocator
        tune_cpu_allocator()
    # the resolved layout is recorded, so a resumed run computes exactly as before
    cfg.memory_format = memory_format_name(resolve_memory_format(d.device, cfg.memory_format))
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    seed_everything(cfg.seed)
    # a registered space's strategy is built before any data is read (bad options fail at
    # once); a user model's space and costs come from its task, which builds and checks it
    builtin = task_factory is None and cfg.space in SPACES
    strategy = build_strategy(cfg, d.device) if builtin else None
    task = (task_factory or build_task)(cfg, d.device, d)
    if strategy is None:
        costs = task.raw_costs(cfg.cost, cfg.cost_table) if cfg.lambda_cost else None
        strategy = build_strategy(cfg, d.device, task.space, costs)
    # the resolved mode is recorded, so a resumed run computes as it began (a resume in the
    # other mode is refused: float rounding differs between compiled and eager steps)
    cfg.compile = resolve_compile(cfg.compile, d.device)
    if cfg.compile == "on":
        attach(task.model, Compiler(compile_mode_for(d.device, "search")))
    weights = [p for p in task.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(weights, lr=cfg.lr, momentum=cfg.momentum,
                                weight_decay=cfg.weight_decay)
    scheduler = _cosine(optimizer, cfg.epochs, cfg.lr_min)
    ckpt = None
    if folder is not None:
        folder.start()
        if folder.resumed:
            ckpt = folder.load_checkpoint(d.device)
            check_resume_world(ckpt.get("world_size"), d.world_size)
            resume_threads(ckpt.get("threads"), cfg.threads, d.is_main)
    return _Run(strategy, task, optimizer, scheduler, ckpt)


def resume_threads(saved: int | None, given: int | None, say: bool = True) -> None:
    """A resumed run computes on the checkpoint's number of CPU threads, so it ends exactly as
    a run that went straight through (sums split over another number of threads round
    differently, and a search then drifts to another cell). ``--threads`` (``given``) wins,
    with one note that results will differ; checkpoints from before the count was recorded
    keep the process's setting."""
    if saved is None:
        return
    if given is None:
        torch.set_num_threads(saved)
    elif given != saved and say:
        print(f"note: resuming on {given} thread{'s' * (given != 1)}; the checkpoint was "
              f"written on {saved}, so the results will differ from a run that went straight "
              f"through (leave out --threads to use {saved})", file=sys.stderr)


def _loop(cfg: SearchConfig, folder: RunFolder | None, d: Dist, run: _Run, progress: bool,
          on_epoch_end: EpochCallback | None) -> SearchResult:
    strategy, task, optimizer, scheduler = run.strategy, run.task, run.optimizer, run.scheduler
    device, model = d.device, task.model
    ctx = ArchContext(loss=task.loss, weights=optimizer.param_groups[0]["params"],
                      optimizer=optimizer, reduce=d.average_)
    start_epoch, wall, totals = 0, 0.0, dict.fromkeys(PHASES, 0.0)
    steps_done = 0  # search steps (architecture + weight step) so far, for time per step
    history: dict[str, list[dict[str, Any]]] = {"metrics.jsonl": [], "arch.jsonl": []}
    if run.ckpt is not None:
        ckpt = run.ckpt
        task.load_state_dict(ckpt["task"])  # first: a task may refuse another model's run
        model.load_state_dict(ckpt["model"])
        strategy.load_state_dict(ckpt["strategy"])
        optimizer.load_state_dict(ckpt["optimizer"])
        scheduler.load_state_dict(ckpt["scheduler"])
        set_rng_state(ckpt["rng"])
        start_epoch, wall, totals = ckpt["epoch"], ckpt["wall_time"], ckpt["totals"]
        steps_done = ckpt.get("steps", 0)  # runs from before the count resume at 0
        history = ckpt["history"]
    else:
        history["arch.jsonl"].append(_arch_record(-1, strategy))
    if folder is not None:
        folder.write_json("config.json", cfg.record())  # a resume may change safe options
        folder.sync_logs(history)
        if cfg.tensorboard:
            folder.log_to_tensorboard(history, start_epoch)
    if d.enabled:  # every rank starts from rank 0's weights and architecture
        d.broadcast_state(model, strategy.parameters())
        strategy.restored()

    timer = PhaseTimer(device)
    bn_layers = batch_norms(model)
    amp = resolve_amp(device, cfg.amp)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        restart = strategy.start_epoch(epoch)
        if restart:  # a fresh network and a fresh learning-rate cosine (random search)
            _reset_weights(model)
            optimizer.state.clear()
            scheduler = _cosine(optimizer, restart, cfg.lr_min)
        sums: dict[str, torch.Tensor] = {}
        bad = torch.zeros((), dtype=torch.bool, device=device)
        steps = task.steps_per_epoch()
        progress_bar = tqdm(total=steps, desc=f"epoch {epoch + 1}/{cfg.epochs}",
                            disable=not progress, leave=False, dynamic_ncols=True)
        timer.start()
        for step, (train_batch, val_batch) in enumerate(task.batches(epoch)):
            with frozen_batch_stats(bn_layers):
                strategy.arch_step(ctx, train_batch, val_batch)
            timer.lap("time_arch")
            optimizer.zero_grad(set_to_none=True)
            with autocast(device, amp):  # the weight step only: arch gradients stay float32
                loss, batch_sums = task.train_loss(train_batch, strategy.weighting())
            timer.lap("time_forward")
            loss.backward()
            d.reduce_gradients(ctx.weights)  # only gradients that exist: the ops that ran
            if cfg.grad_clip:
                nn.utils.clip_grad_norm_(ctx.weights, cfg.grad_clip)
            optimizer.step()
            timer.lap("time_backward")
            bad |= ~torch.isfinite(loss.detach())
            for k, v in batch_sums.items():
                sums[k] = sums[k] + v if k in sums else v.clone()
            if (step + 1) % cfg.log_every == 0 or step + 1 == steps:
                if d.any_failed(bool(bad)):  # every rank stops, not only the one that saw it
                    raise NaspError(
                        f"the training loss became {float(loss)} at epoch {epoch + 1}, "
                        f"step {step + 1}", "lower --lr or --arch-lr, or keep --grad-clip on; "
                        "--resume restarts from the last good epoch")
                progress_bar.set_postfix(task.summarize(_to_float(sums), "train"),
                                         refresh=False)
            progress_bar.update(1)
            timer.start()
            steps_done += 1
        progress_bar.close()
        phases = timer.collect()
        scheduler.step()
        sums = d.sum_metrics(sums)
        d.average_buffers(model)  # each rank's statistics saw only its shard
        record: dict[str, Any] = {"epoch": epoch}
        record.update(task.summarize(_to_float(sums), "train"))
        record.update(task.evaluate(strategy.eval_weighting()))
        strategy.end_epoch(epoch, record)
        geno = strategy.genotype()
        record.update(task.genotype_metrics(geno))  # e.g. NAS-Bench-201's ground truth
        record.update(strategy.budget_metrics())  # a latency budget's prediction and λ
        epoch_time = time.perf_counter() - t0
        wall += epoch_time
        for k in totals:
            totals[k] += phases.get(k, 0.0)
        record.update({"lr": optimizer.param_groups[0]["lr"],
                       **{k: phases.get(k, 0.0) for k in totals}, "epoch_time": epoch_time,
                       "wall_time": wall, "peak_mem_mb": peak_memory_mb(device)})
        if not all(math.isfinite(v) for v in record.values() if isinstance(v, float)):
            raise NaspError(f"a metric became non-finite at epoch {epoch + 1}: {record}",
                            "lower --lr or --arch-lr")
        if cfg.check_sync:
            d.check_sync({**{f"weights.{k}": v for k, v in model.state_dict().items()},
                          **{f"arch.{c}.{k}": v for c, mats in strategy.snapshot().items()
                             for k, v in mats.items()}}, f"after epoch {epoch + 1}")
        arch = _arch_record(epoch, strategy)
        history["metrics.jsonl"].append(record)
        history["arch.jsonl"].append(arch)
        if progress:
            shown = {k: round(v, 4) for k, v in record.items()  # nb201_*: the held cell's
                     if k.startswith(("train_", "valid_", "test_", "nb201_"))}  # ground truth
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} {shown} {geno}")
        if folder is not None:
            folder.end_epoch({
                "model": model.state_dict(), "strategy": strategy.state_dict(),
                "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "task": task.state_dict(), "rng": rng_state(), "epoch": epoch + 1,
                "wall_time": wall, "totals": totals, "steps": steps_done, "history": history,
                "world_size": d.world_size, "threads": torch.get_num_threads()},
                {"metrics.jsonl": record, "arch.jsonl": arch})
            folder.write_text(_record_file(geno), geno.to_json())
        if on_epoch_end is not None:
            on_epoch_end(epoch, record)
        if strategy.finished():
            break

    metrics = history["metrics.jsonl"]
    result = search_result(strategy, task, metrics, cfg, wall, totals, device, d.world_size)
    result["steps"] = steps_done
    if folder is not None:
        folder.write_text(_record_file(strategy.genotype()), strategy.genotype().to_json())
        folder.write_json("result.json", result)
    return SearchResult(strategy.genotype(), metrics, folder.path if folder else None, strategy,
                        result, model)


def _record_file(record: Any) -> str:
    """genotype.json, or the file of a space's own record (a user model's arch.json)."""
    return getattr(record, "FILE", "genotype.json")


def search_result(strategy: Strategy, task: Any, metrics: list[dict[str, Any]],
                  cfg: SearchConfig, wall: float, totals: dict[str, float],
                  device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """result.json of a search: the genotype, and metrics named for the network they measure.

    ``search_*`` are the per-epoch validation metrics of the epoch ``genotype_epoch`` names
    (random search: the chosen candidate's), else of the last epoch; ``search_network`` says
    which network they measured (for DARTS the softmax mixture, not the genotype). A genotype's
    own, comparable score comes from ``nasp compare`` (``final_*``), never from these."""
    geno = strategy.genotype()
    chosen = strategy.genotype_epoch()
    record = next((m for m in metrics if m["epoch"] == chosen), metrics[-1] if metrics else {})
    result: dict[str, Any] = {
        getattr(geno, "KEY", "genotype"): geno.to_dict(), "strategy": strategy.name,
        "space": cfg.space,
        "epochs": metrics[-1]["epoch"] + 1 if metrics else 0, "search_time_s": wall, **totals,
        "peak_mem_mb": peak_memory_mb(device), "search_network": strategy.network,
        "compile": cfg.compile,
        "search_epoch": record.get("epoch"), "environment": environment(device, world_size)}
    for key, value in record.items():
        if key.startswith(("valid_", "test_")):
            result[f"search_{key}"] = value
    truth = task.genotype_metrics(geno)
    result.update(truth)
    if any(k.startswith("nb201_") for k in truth):  # say what the ground truth is and is not
        from nasp.nb201.table import NOTE

        result["nb201_note"] = NOTE
    if cfg.target_device:
        result["target_device"] = cfg.target_device
    result.update(strategy.budget_metrics())
    result["eval_params_m"] = task.eval_params_m(geno)
    return result
