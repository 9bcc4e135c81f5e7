"""Language modelling as a search task: the recurrent supernet on a word-level corpus.

As in DARTS's recurrent search, network weights learn on the training text and architecture
parameters on the validation text, both cut into ``batch_size`` parallel streams and read in
``bptt``-token windows; ``evaluate`` reports perplexity on the validation text with
``eval_batch_size`` streams. The test text is held out: only ``evaluate_on="test"``
(``nasp compare``'s scoring of final architectures) reads it.

Hidden states. Each stream (train, valid) carries its hidden state from one window to the next
(truncated back-propagation: the state is detached between windows) and restarts from zeros
when it wraps round to the start of its text. A batch holds the hidden state it starts from,
so a strategy may evaluate ``loss`` on the same batch several times (DARTS's second-order step
does) and every call sees the same start. What advances a stream:

* the validation stream - the last ``loss`` call on its batch (the architecture step; for
  DARTS 2nd order the pass at the unrolled weights, as DARTS does);
* the training stream - ``train_loss`` (the weight step) only; ``loss`` calls on a training
  batch (DARTS 2nd order) leave it alone.

The new state is committed when the next batch of that stream is made (or by ``state_dict``),
never during a step.

Windows. Step s of epoch e reads training window ``(e * steps + s) mod n_train`` and validation
window ``(e * steps + s) mod n_valid``: without ``max_steps_per_epoch`` an epoch is one pass over
the training text; with it, consecutive epochs continue through the text instead of re-reading
its beginning. Windows depend on (epoch, step) only, so a run resumed at an epoch boundary reads
exactly what an uninterrupted one reads.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from nasp.configs import SearchConfig
from nasp.data.text import Corpus, batchify, get_batch, load_corpus
from nasp.device import tune_cpu_allocator
from nasp.distributed import Dist
from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.models.rnn import count_lm_params, perplexity
from nasp.spaces import get_space
from nasp.supernet.rnn import RNNSearchModel
from nasp.supernet.weighting import Weighting


class _Stream:
    """A batchified text read window by window, with the hidden state carried along it."""

    def __init__(self, name: str, data: torch.Tensor, bptt: int, hidden: torch.Tensor) -> None:
        self.name, self.data, self.bptt = name, data, bptt
        self.windows = math.ceil((data.size(0) - 1) / bptt)
        self.hidden = hidden            # the state the next window starts from
        self.pending: torch.Tensor | None = None  # the state after the current window

    def commit(self) -> None:
        if self.pending is not None:
            self.hidden, self.pending = self.pending, None

    def batch(self, step: int) -> LMBatch:
        self.commit()
        w = step % self.windows
        if w == 0:  # back at the start of the text: the carried state no longer applies
            self.hidden = torch.zeros_like(self.hidden)
        data, targets = get_batch(self.data, w * self.bptt, self.bptt)
        return LMBatch(data, targets, self.hidden, self)


@dataclass
class LMBatch:
    """One window: inputs (T, B), flattened targets (T*B,), the start state, its stream."""

    data: torch.Tensor
    targets: torch.Tensor
    hidden: torch.Tensor
    stream: _Stream


class LMSearchTask:
    def __init__(self, cfg: SearchConfig, corpus: Corpus, device: torch.device,
                 dist: Dist | None = None) -> None:
        self.space = get_space(cfg.space)
        self.device = device
        self.dist = d = dist or Dist(device=device)
        self.corpus = corpus
        self.ntokens = corpus.ntokens
        self.bptt = cfg.bptt
        if cfg.bptt < 1:
            raise NaspError(f"invalid bptt: {cfg.bptt}", "use --bptt 1 or more")
        if min(cfg.batch_size, cfg.eval_batch_size) < 2:
            raise NaspError("the search cell's batch normalisation needs 2 or more streams, got "
                            f"batch_size={cfg.batch_size}, eval_batch_size={cfg.eval_batch_size}",
                            "use --batch-size and --eval-batch-size of 2 or more")
        self.model = RNNSearchModel(self.space, corpus.ntokens, cfg.emsize, cfg.nhid,
                                    cfg.dropout, cfg.dropouth, cfg.dropoutx, cfg.dropouti,
                                    cfg.dropoute).to(device)
        # data parallel: each rank carries its own columns (streams) of the global batch
        rows = slice(*d.batch_rows(0, cfg.batch_size))
        eval_rows = slice(*d.batch_rows(0, cfg.eval_batch_size))
        zeros = self.model.init_hidden(rows.stop - rows.start)
        self.train = _Stream("train", batchify(corpus.train, cfg.batch_size, device)[:, rows],
                             cfg.bptt, zeros)
        self.valid = _Stream("valid", batchify(corpus.valid, cfg.batch_size, device)[:, rows],
                             cfg.bptt, zeros.clone())
        self.eval_batch_size = eval_rows.stop - eval_rows.start
        held_out = corpus.valid if cfg.evaluate_on == "valid" else corpus.test
        self.valid_eval = batchify(held_out, cfg.eval_batch_size, device)[:, eval_rows]
        self.eval_prefix = cfg.evaluate_on
        self.max_steps = cfg.max_steps_per_epoch

    def steps_per_epoch(self) -> int:
        n = self.train.windows
        return min(n, self.max_steps) if self.max_steps else n

    def batches(self, epoch: int) -> Iterator[tuple[LMBatch, LMBatch]]:
        steps = self.steps_per_epoch()
        for s in range(steps):
            g = epoch * steps + s
            yield self.train.batch(g), self.valid.batch(g)

    def _forward(self, batch: LMBatch, weighting: Weighting) -> tuple[torch.Tensor, torch.Tensor]:
        logits, hidden = self.model(batch.data, batch.hidden, weighting)
        return F.cross_entropy(logits.view(-1, self.ntokens), batch.targets), hidden.detach()

    def loss(self, batch: LMBatch, weighting: Weighting) -> torch.Tensor:
        """Cross entropy of one window; advances only the validation stream (see above)."""
        loss, hidden = self._forward(batch, weighting)
        if batch.stream is self.valid:
            batch.stream.pending = hidden
        return loss

    def train_loss(self, batch: LMBatch, weighting: Weighting
                   ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss, hidden = self._forward(batch, weighting)
        batch.stream.pending = hidden
        n = batch.targets.numel()
        with torch.no_grad():
            sums = {"loss_sum": loss.detach() * n,
                    "count": torch.full((), n, device=self.device)}  # a fill, no copy
        return loss, sums

    @staticmethod
    def summarize(sums: dict[str, float], prefix: str) -> dict[str, float]:
        loss = sums["loss_sum"] / max(sums.get("count", 0.0), 1.0)
        return {f"{prefix}_loss": loss, f"{prefix}_ppl": perplexity(loss)}

    @torch.no_grad()
    def evaluate(self, weighting: Weighting) -> dict[str, float]:
        """Validation perplexity over the whole validation text, streams carried across
        windows from a zero state; eval mode turns the dropouts off (BN keeps using batch
        statistics, see ``nasp.supernet.rnn``)."""
        was_training = self.model.training
        self.model.eval()
        hidden = self.model.init_hidden(self.eval_batch_size)
        loss_sum = torch.zeros((), device=self.device, dtype=torch.float64)
        count = 0
        for i in range(0, self.valid_eval.size(0) - 1, self.bptt):
            data, targets = get_batch(self.valid_eval, i, self.bptt)
            logits, hidden = self.model(data, hidden, weighting)
            loss_sum += F.cross_entropy(logits.view(-1, self.ntokens), targets, reduction="sum")
            count += targets.numel()
        self.model.train(was_training)
        total = self.dist.sum_metrics({"loss_sum": loss_sum,
                                       "count": torch.tensor(float(count), device=self.device)})
        return self.summarize({k: float(v) for k, v in total.items()}, self.eval_prefix)

    def genotype_metrics(self, genotype: Genotype) -> dict[str, float]:
        return {}

    def eval_params_m(self, genotype: Genotype) -> float:
        """Parameters (M) of the genotype's language model at the paper's size."""
        return count_lm_params(genotype, ntokens=self.ntokens) / 1e6

    def state_dict(self) -> dict[str, Any]:
        for stream in (self.train, self.valid):
            stream.commit()
        return {"train_hidden": self.train.hidden.detach().clone(),
                "valid_hidden": self.valid.hidden.detach().clone()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for stream in (self.train, self.valid):
            saved = state[f"{stream.name}_hidden"]
            if saved.shape != stream.hidden.shape:
                raise NaspError(f"the checkpoint's {stream.name} hidden state has shape "
                                f"{tuple(saved.shape)}, this run {tuple(stream.hidden.shape)}",
                                "resume with the batch size and nhid the run started with")
            stream.hidden = saved.to(stream.hidden)
            stream.pending = None


def build_lm_task(cfg: SearchConfig, device: torch.device,
                  dist: Dist | None = None) -> LMSearchTask:
    if device.type == "cpu":  # vocabulary-sized tensors every step: see tune_cpu_allocator
        tune_cpu_allocator()
    return LMSearchTask(cfg, load_corpus(cfg.data, cfg.data_root), device, dist)
