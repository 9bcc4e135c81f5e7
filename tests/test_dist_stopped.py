"""A stopped rank (SIGSTOP: a hung machine, a process frozen by a debugger) is named by the
others within the collective timeout plus a few seconds, not two or three timeouts later."""

from __future__ import annotations

import os
import signal
import socket
import time

import pytest
import torch

from dist_util import run_ranks
from nasp.distributed import Dist, RankFailure

TIMEOUT = 4.0
SLACK = 4.0  # the heartbeat window (2 s) and a busy machine's scheduling


def _steps(d: Dist, victim: int):
    """Gradient averages; ``victim`` stops itself before the second. A survivor returns how
    long its failing collective took to fail, and the error."""
    g = [torch.ones(1000)]
    for step in range(3):
        if step == 1 and d.rank == victim:
            os.kill(os.getpid(), signal.SIGSTOP)  # the harness kills it once the others end
        t0 = time.monotonic()
        try:
            d.average_(g)
        except RankFailure as e:
            return {"waited": time.monotonic() - t0, "message": e.message, "hint": e.hint}
    return "finished"


@pytest.mark.parametrize("victim, survivor", [(1, 0), (0, 1)])
def test_a_stopped_rank_is_named_within_the_timeout_plus_a_few_seconds(tmp_path, victim,
                                                                       survivor):
    results = run_ranks(_steps, tmp_path, world=2, timeout_s=TIMEOUT, join_s=60,
                        wait_for=[survivor], victim=victim)
    got = results[survivor].get("value")
    assert isinstance(got, dict), results[survivor]
    assert f"rank {victim} stopped answering" in got["message"], got
    assert TIMEOUT - 0.5 <= got["waited"] < TIMEOUT + SLACK, got
    assert f"on {socket.gethostname()}" in got["hint"], got  # which process to look at
