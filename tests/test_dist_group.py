"""Process-group handling: torchrun's environment, a caller's group, one process; sharding."""

from __future__ import annotations

import multiprocessing as mp
import os
import socket

import pytest
import torch
import torch.distributed as dist

from dist_util import run_ranks, values
from nasp.distributed import (
    Dist,
    check_resume_world,
    init_distributed,
    local_batch_size,
    shard_rows,
    split_range,
)
from nasp.errors import NaspError

TORCHRUN_KEYS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")


@pytest.fixture
def no_torchrun_env(monkeypatch):
    for k in TORCHRUN_KEYS:
        monkeypatch.delenv(k, raising=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _torchrun_rank(rank: int, port: int, queue) -> None:
    """What torchrun sets for each worker, then nasp's own initialisation."""
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank),
                      MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    try:
        d = init_distributed("cpu", timeout_s=20)
        x = torch.tensor([float(d.rank + 1)])
        d.average_([x])
        queue.put((rank, "init", (d.rank, d.world_size, str(d.device), d.backend, d.is_main,
                                  float(x), d.owns_group)))
        d.close()
        queue.put((rank, "closed", dist.is_initialized()))
    except Exception as exc:
        queue.put((rank, "error", repr(exc)))


def test_init_from_torchrun_environment_makes_a_gloo_group_on_cpu(no_torchrun_env):
    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    port = _free_port()
    procs = [ctx.Process(target=_torchrun_rank, args=(r, port, queue)) for r in range(2)]
    for p in procs:
        p.start()
    got = {}
    for _ in range(4):
        rank, kind, value = queue.get(timeout=60)
        got[rank, kind] = value
    for p in procs:
        p.join(10)
    assert got == {(0, "init"): (0, 2, "cpu", "gloo", True, 1.5, True), (0, "closed"): False,
                   (1, "init"): (1, 2, "cpu", "gloo", False, 1.5, True), (1, "closed"): False}


def _reuse(d: Dist):
    return d.rank, d.world_size, d.backend, d.owns_group, d.is_main


def test_a_callers_group_is_reused_and_left_open(tmp_path):
    # run_ranks makes the group itself, then calls init_distributed (as nasp.search would)
    assert values(run_ranks(_reuse, tmp_path)) == [(0, 2, "gloo", False, True),
                                                   (1, 2, "gloo", False, False)]


def _subgroup(d: Dist):
    sub = dist.new_group(ranks=[1, 2])  # every rank of the world takes part in making it
    if d.rank == 0:
        return None
    inner = init_distributed("cpu", timeout_s=10, group=sub)
    x = torch.tensor([float(d.rank)])
    inner.broadcast_([x])  # from the subgroup's rank 0, which is global rank 1
    y = torch.tensor([float(d.rank)])
    inner.average_([y])
    inner.barrier()
    return inner.rank, inner.world_size, float(x), float(y)


def test_a_callers_subgroup_is_used_with_its_own_ranks(tmp_path):
    assert values(run_ranks(_subgroup, tmp_path, world=3)) == [None, (0, 2, 1.0, 1.5),
                                                               (1, 2, 1.0, 1.5)]


def test_without_torchrun_it_is_one_process(no_torchrun_env):
    d = init_distributed("cpu")
    assert (d.rank, d.world_size, d.device, d.group, d.enabled) == (0, 1, torch.device("cpu"),
                                                                    None, False)
    d.close()


def test_world_size_one_under_torchrun_is_one_process(no_torchrun_env, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("RANK", "0")
    assert not init_distributed("cpu").enabled


def test_incomplete_torchrun_environment_is_a_clear_error(no_torchrun_env, monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(NaspError, match="MASTER_ADDR, MASTER_PORT is not") as err:
        init_distributed("cpu")
    assert "torchrun" in err.value.hint
    monkeypatch.setenv("RANK", "x")
    with pytest.raises(NaspError, match="RANK='x'"):
        init_distributed("cpu")


def test_uneven_global_batch_names_sizes_that_work():
    assert local_batch_size(64, 4) == 16
    with pytest.raises(NaspError) as err:
        local_batch_size(63, 2)
    assert "--batch-size 63 does not split evenly over 2 ranks" in err.value.message
    assert "62 or 64" in err.value.hint
    with pytest.raises(NaspError) as err:
        local_batch_size(3, 4, option="--eval-batch-size")
    assert "--eval-batch-size 3" in err.value.message and "e.g. 4" in err.value.hint


def test_shards_are_disjoint_and_make_up_the_global_batch():
    for step in range(3):
        rows = [shard_rows(step, 12, r, 3) for r in range(3)]
        covered = [i for lo, hi in rows for i in range(lo, hi)]
        assert covered == list(range(step * 12, (step + 1) * 12))
    with pytest.raises(NaspError):
        shard_rows(0, 10, 0, 3)


def test_eval_split_covers_every_sample_once():
    for n, world in ((10, 3), (2, 4), (7, 2)):
        parts = [split_range(n, r, world) for r in range(world)]
        assert [i for lo, hi in parts for i in range(lo, hi)] == list(range(n))
        assert max(hi - lo for lo, hi in parts) - min(hi - lo for lo, hi in parts) <= 1


def test_resume_at_another_world_size_names_the_size_to_use():
    check_resume_world(2, 2)
    check_resume_world(None, 1)  # a checkpoint from before data parallelism
    with pytest.raises(NaspError) as err:
        check_resume_world(4, 2)
    assert "written by 4 process(es), this run has 2" in err.value.message
    assert "--nproc-per-node 4" in err.value.hint
    with pytest.raises(NaspError, match="without torchrun"):
        check_resume_world(1, 2)


def test_the_task_names_the_global_batches_it_splits_over_ranks():
    """The search loop asks the task which batches must split evenly; it never names a task."""
    from types import SimpleNamespace

    from nasp.configs import SearchConfig, resolve
    from nasp.tasks import check_batches

    two_ranks = SimpleNamespace(local_batch=lambda size, option="--batch-size":
                                local_batch_size(size, 2, option))
    check_batches(resolve(SearchConfig, {"batch_size": 8, "eval_batch_size": 9}), two_ranks)
    with pytest.raises(NaspError, match="--batch-size 9 does not split"):
        check_batches(resolve(SearchConfig, {"batch_size": 9}), two_ranks)
    lm = resolve(SearchConfig, {"task": "lm", "batch_size": 8, "eval_batch_size": 9})
    with pytest.raises(NaspError, match="--eval-batch-size 9 does not split"):
        check_batches(lm, two_ranks)
