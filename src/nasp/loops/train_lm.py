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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from nasp.compiled import Compiler, attach, resolve_compile
from nasp.configs import LMTrainConfig
from nasp.data.text import Corpus, batchify, get_batch, load_corpus
from nasp.device import environment, tune_cpu_allocator
from nasp.distributed import Dist, check_resume_world, init_distributed
from nasp.errors import NaspError
from nasp.export.record import LM_DROPOUTS, lm_record
from nasp.genotype import Genotype, get_genotype
from nasp.loops.timing import peak_memory_mb
from nasp.models.rnn import RNNModel, count_lm_params, perplexity
from nasp.run_folder import RunFolder, rng_state, seed_everything, set_rng_state

# --- evaluation --------------------------------------------------------------------------

@torch.no_grad()
def evaluate_lm(model: RNNModel, data: Streams | torch.Tensor, bptt: int,
                d: Dist | None = None) -> float:
    """Mean cross entropy per token over a batchified text, streams carried from zeros; over
    every rank's streams when they are sharded."""
    streams = data if isinstance(data, Streams) else Streams(data, False)
    was_training = model.training
    model.eval()
    hidden = model.init_hidden(streams.data.size(1))
    sums = {"loss": torch.zeros((), dtype=torch.float64, device=streams.data.device),
            "count": torch.zeros((), dtype=torch.float64, device=streams.data.device)}
    for i in range(0, streams.data.size(0) - 1, bptt):
        inputs, targets = get_batch(streams.data, i, bptt)
        logits, hidden, _ = model(inputs, hidden)
        sums["loss"] += F.cross_entropy(logits.view(-1, model.ntokens), targets, reduction="sum")
        sums["count"] += targets.numel()
    model.train(was_training)
    if streams.sharded and d is not None:
        sums = d.sum_metrics(sums)
    return float(sums["loss"]) / float(sums["count"])


@dataclass
class Streams:
    """A batchified text; ``sharded``: each rank holds its own columns (streams) of it."""

    data: torch.Tensor
    sharded: bool


def streams(text: torch.Tensor, bsz: int, device: torch.device, d: Dist) -> Streams:
    """``bsz`` streams, split by columns over the ranks when they divide evenly; otherwise
    (the paper's test batch of 1) every rank reads all of them and gets the same result."""
    data = batchify(text, bsz, device)
    if not d.enabled or bsz % d.world_size:
        return Streams(data, False)
    lo, hi = d.batch_rows(0, bsz)
    return Streams(data[:, lo:hi].contiguous(), True)


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

def _non_finite(where: str, value: float) -> NaspError:
    return NaspError(f"the training loss became {value} {where}",
                     "lower --lr (e.g. --lr 10) or --grad-clip, or raise the dropouts; "
                     "--resume restarts from the last good epoch")


def train_epoch(model: RNNModel, optimizer: torch.optim.Optimizer, data: torch.Tensor,
                cfg: LMTrainConfig, epoch: int, progress: bool, d: Dist | None = None) -> float:
    """One pass over the training streams (this rank's columns); returns the mean training loss
    per token over every rank."""
    d = d or Dist(device=data.device)
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
        d.reduce_gradients(params)
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
            if d.any_failed(not math.isfinite(mean_loss)):  # every rank stops
                raise _non_finite(f"at epoch {epoch + 1}, step {step}", mean_loss)
            bar.set_postfix(loss=f"{mean_loss:.3f}", ppl=f"{perplexity(mean_loss):.1f}")
        if cfg.max_steps_per_epoch and step >= cfg.max_steps_per_epoch:
            break
    bar.close()
    for group in optimizer.param_groups:
        group["lr"] = cfg.lr
    sums = d.sum_metrics({"loss": total.double(),
                          "tokens": torch.tensor(float(tokens), device=total.device)})
    mean_loss = float(sums["loss"]) / max(float(sums["tokens"]), 1.0)
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
    """Train (or resume) a language model in ``cfg.out``; returns result.json's content. Under
    torchrun each rank trains on its streams of the global batch; rank 0 writes."""
    d = init_distributed(cfg.device, timeout_s=cfg.dist_timeout)
    folder = None
    try:
        with d.setup():
            d.local_batch(cfg.batch_size)
            folder = RunFolder.open(cfg.out or cfg.default_out(), resume=resume,
                                    overwrite=overwrite, command="nasp train --task lm",
                                    writer=d.is_main)
            ckpt = folder.load_checkpoint(d.device) if folder.resumed else None
            if ckpt is not None:
                check_resume_world(ckpt.get("world_size"), d.world_size)
            # the genotype a run started with travels in its checkpoint
            genotype = Genotype.from_dict(ckpt["genotype"]) if ckpt is not None else \
                get_genotype(cfg.genotype, task="lm")
            if genotype.task != "lm":
                raise NaspError(f"genotype {cfg.genotype!r} is a CNN genotype",
                                "pass a recurrent genotype (DARTS_V1, DARTS_V2, or an LM "
                                "search's genotype.json) or use --task cnn")
            if d.device.type == "cpu":
                tune_cpu_allocator()
            corpus = corpus or load_corpus(cfg.data, cfg.data_root)
            # recorded resolved: a resume computes as the run began (the other mode is refused)
            cfg.compile = resolve_compile(cfg.compile, d.device)
            folder.start()
        return _train(cfg, folder, ckpt, genotype, corpus, d, progress and d.is_main)
    finally:
        if folder is not None:
            folder.close()
        d.close()


def _train(cfg: LMTrainConfig, folder: RunFolder, ckpt: dict[str, Any] | None,
           genotype: Genotype, corpus: Corpus, d: Dist, progress: bool) -> dict[str, Any]:
    device = d.device
    seed_everything(cfg.seed)
    model = RNNModel(genotype, corpus.ntokens, cfg.emsize, cfg.nhid, cfg.dropout, cfg.dropouth,
                     cfg.dropoutx, cfg.dropouti, cfg.dropoute).to(device)
    if cfg.compile == "on":  # the cell's time step, one graph whatever the window's length
        attach(model.cell, Compiler())
    # what nasp.load needs to rebuild the model and its vocabulary without the corpus
    network = lm_record(genotype, corpus.vocab, cfg.emsize, cfg.nhid,
                        {k: getattr(cfg, k) for k in LM_DROPOUTS}, cfg.data)
    params = [p for p in model.parameters() if p.requires_grad]
    train_data = streams(corpus.train, cfg.batch_size, device, d).data  # split: checked above
    valid_data = streams(corpus.valid, cfg.eval_batch_size, device, d)
    state = _State()
    history: list[dict[str, Any]] = []
    optimizer = make_optimizer(params, cfg, False, device)
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        state = _State(**ckpt["state"])
        optimizer = make_optimizer(params, cfg, state.asgd, device)
        optimizer.load_state_dict(ckpt["optimizer"])
        set_rng_state(ckpt["rng"])
        history = ckpt["history"]
    folder.write_json("config.json", cfg.record())  # a resume may change safe options
    folder.sync_logs({"metrics.jsonl": history})
    if cfg.tensorboard:
        folder.log_to_tensorboard({"metrics.jsonl": history}, state.epoch)
    d.broadcast_state(model)  # every rank starts from rank 0's weights

    for epoch in range(state.epoch, cfg.epochs):
        t0 = time.perf_counter()
        used = "asgd" if state.asgd else "sgd"
        train_loss = train_epoch(model, optimizer, train_data, cfg, epoch, progress, d)
        with averaged_weights(model, optimizer):
            val_loss = evaluate_lm(model, valid_data, cfg.bptt, d)
            if not math.isfinite(val_loss):
                raise _non_finite(f"(validation) after epoch {epoch + 1}", val_loss)
            if val_loss < state.best_val_loss:
                state.best_val_loss, state.best_epoch = val_loss, epoch
                folder.save_checkpoint({"model": model.state_dict(), "epoch": epoch,
                                        "valid_loss": val_loss, **network}, "best.pt")
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
        history.append(record)
        folder.end_epoch({
            "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "state": dataclasses.asdict(state), "rng": rng_state(), "history": history,
            "world_size": d.world_size, **network}, {"metrics.jsonl": record})
        if progress:
            tqdm.write(f"epoch {epoch + 1}/{cfg.epochs} train ppl {perplexity(train_loss):.2f} "
                       f"valid ppl {perplexity(val_loss):.2f}"
                       + (" (switched to ASGD)" if switched else "")
                       + f" {epoch_time:.1f}s")

    # final numbers: the best-validation weights on the validation and test texts
    if d.is_main:
        model.load_state_dict(folder.load_checkpoint(device, "best.pt")["model"])
    d.broadcast_state(model)
    valid_loss = evaluate_lm(model, valid_data, cfg.bptt, d)
    test_loss = evaluate_lm(model, streams(corpus.test, cfg.test_batch_size, device, d),
                            cfg.bptt, d)
    result = {"valid_loss": valid_loss, "valid_ppl": perplexity(valid_loss),
              "test_loss": test_loss, "test_ppl": perplexity(test_loss),
              "best_epoch": state.best_epoch, "epochs": state.epoch,
              "params_m": count_lm_params(genotype, corpus.ntokens, cfg.emsize, cfg.nhid) / 1e6,
              "train_time_s": state.wall_time, "genotype": genotype.to_dict(),
              "compile": cfg.compile,
              "environment": environment(device, d.world_size)}
    folder.write_json("result.json", result)
    if progress:
        tqdm.write(f"valid ppl {result['valid_ppl']:.2f}, test ppl {result['test_ppl']:.2f}, "
                   f"{result['params_m']:.2f}M parameters; run folder: {folder.path}")
    return result
