"""A rank that dies or hangs: the others stop within the timeout, naming it."""

from __future__ import annotations

import os
import time

import torch

from dist_util import run_ranks
from nasp.distributed import Dist

TIMEOUT = 2.0


def _step(d: Dist, victim: int, how: str, steps: int = 3):
    """A few gradient reductions; ``victim`` dies (or hangs) before the second."""
    g = torch.ones(1000)
    for step in range(steps):
        if step == 1 and d.rank == victim:
            if how == "die":
                os._exit(9)
            time.sleep(30 * TIMEOUT)  # hung: the harness kills it
        d.average_([g])
    return "finished"


def _assert_named(result, victim: int):
    assert result.get("error") == "RankFailure", result
    assert f"rank {victim} stopped answering (dead, or stuck for over {TIMEOUT:g} s" in \
        result["message"]


def test_a_killed_rank_makes_the_others_fail_naming_it(tmp_path):
    results = run_ranks(_step, tmp_path, world=3, timeout_s=TIMEOUT, join_s=30, wait_for=[0, 2],
                        victim=1, how="die")
    for r in (0, 2):
        _assert_named(results[r], 1)
        assert results[r]["elapsed"] < 4 * TIMEOUT
    assert "value" not in results[1]


def test_a_hung_rank_makes_the_others_fail_naming_it_within_the_timeout(tmp_path):
    results = run_ranks(_step, tmp_path, world=2, timeout_s=TIMEOUT, join_s=30, wait_for=[0],
                        victim=1, how="hang")
    _assert_named(results[0], 1)
    assert TIMEOUT <= results[0]["elapsed"] < 5 * TIMEOUT  # collective + diagnosis: 3 T


def test_a_hung_rank_0_is_named_by_the_others(tmp_path):
    results = run_ranks(_step, tmp_path, world=2, timeout_s=TIMEOUT, join_s=30, wait_for=[1],
                        victim=0, how="hang")
    _assert_named(results[1], 0)
    assert results[1]["elapsed"] < 6 * TIMEOUT  # collective + verdict: 4 T
