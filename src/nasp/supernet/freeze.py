"""Batch-norm running statistics during architecture steps: the one rule for every strategy.

No architecture step moves running statistics. The architecture step computes a validation-batch
gradient (and, for DARTS's second order, look-ahead passes at shifted weights; for NASP, probes of
unselected ops inside backward): if those passes updated the running statistics, validation
batches - and ops that are not part of the network - would leak into the statistics that
evaluation-mode passes use. Batch statistics are still used for normalisation inside the step
(training mode), exactly as in the weight step; only the running averages stand still. The
weight step alone updates them, and only for the ops it runs.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn


def batch_norms(model: nn.Module) -> list[nn.modules.batchnorm._BatchNorm]:
    """The batch-norm layers that keep running statistics."""
    return [m for m in model.modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]


@contextmanager
def frozen_batch_stats(layers: list[nn.modules.batchnorm._BatchNorm]) -> Iterator[None]:
    """Normalise with batch statistics but update no running statistic (nor the batch count).

    With ``track_running_stats`` off, a training-mode BN passes no running buffers to the
    kernel: it normalises with the batch and writes nothing. Toggling the flag costs a few
    microseconds per step, far less than saving and restoring every buffer (set in the
    instance dict: a plain attribute, and ``Module.__setattr__`` costs ~2 µs x 1,400 layers)."""
    for m in layers:
        m.__dict__["track_running_stats"] = False
    try:
        yield
    finally:
        for m in layers:
            m.__dict__["track_running_stats"] = True
