"""Running a function on several gloo ranks in forked processes, for the distributed tests.

Fork (not spawn) because a spawned child re-imports torch: seconds per test on a busy machine
against a tenth of one. Each rank writes ``{"value": ...}`` or ``{"error": ..., "message":
...}`` to a file, so a rank that dies, hangs or raises is reported rather than lost.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
import traceback
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.distributed as dist

from nasp.distributed import Dist, init_distributed

if "fork" not in mp.get_all_start_methods() or not dist.is_available():
    pytest.skip("needs fork and torch.distributed", allow_module_level=True)


def _entry(fn, rank: int, world: int, store: str, out: str, timeout_s: float,
           kwargs: dict[str, Any]) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    d = init_distributed("cpu", timeout_s=timeout_s)
    try:
        result: dict[str, Any] = {"value": fn(d, **kwargs)}
        ok = True
    except Exception as exc:  # reported to the test, which decides
        result = {"error": type(exc).__name__, "message": str(exc),
                  "traceback": traceback.format_exc()}
        ok = False
    result["elapsed"] = time.monotonic() - START
    torch.save(result, out)
    if ok:
        d.barrier()  # nobody leaves while a peer still reads from it
    os._exit(0)  # no atexit handlers: they may wait for a dead peer


START = time.monotonic()


def run_ranks(fn, tmp_path: Path, world: int = 2, timeout_s: float = 10.0,
              join_s: float = 60.0, wait_for: list[int] | None = None,
              **kwargs: Any) -> list[dict[str, Any]]:
    """``fn(dist, **kwargs)`` on ``world`` gloo ranks; one result dict per rank (``exitcode``
    only for a rank that wrote nothing). Only the ranks in ``wait_for`` (default all) are
    waited for; the others are killed once those ended."""
    global START
    # the first optimizer imports torch._dynamo (seconds): once here, not in every child
    torch.optim.SGD([torch.zeros(1, requires_grad=True)])
    ctx = mp.get_context("fork")
    tag = uuid.uuid4().hex[:8]
    store = tmp_path / f"store-{tag}"
    outs = [tmp_path / f"rank{r}-{tag}.pt" for r in range(world)]
    START = time.monotonic()
    procs = [ctx.Process(target=_entry, args=(fn, r, world, str(store), str(outs[r]),
                                              timeout_s, kwargs)) for r in range(world)]
    for p in procs:
        p.start()
    deadline = time.monotonic() + join_s
    for r in range(world) if wait_for is None else wait_for:
        procs[r].join(max(deadline - time.monotonic(), 0.1))
    results = []
    for p, out in zip(procs, outs):
        if p.is_alive():
            p.kill()
            p.join()
        results.append(torch.load(out, weights_only=False) if out.exists()
                       else {"exitcode": p.exitcode})
    return results


def values(results: list[dict[str, Any]]) -> list[Any]:
    """The ranks' return values; fails the test with the ranks' errors if any rank failed."""
    bad = [r for r in results if "value" not in r]
    assert not bad, bad
    return [r["value"] for r in results]


__all__ = ["Dist", "run_ranks", "values"]
