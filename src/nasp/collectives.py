"""Collectives over lists of tensors, in a few flat buckets, for data-parallel search.

Why not DDP: a single-path supernet changes the set of parameters that take part from step to
step (NASP runs one op per edge), DDP hands the others a zero gradient (so momentum and weight
decay move weights of ops that did not run) and ``find_unused_parameters`` walks the autograd
graph every step. Here the caller passes exactly the tensors to reduce; they are the same on
every rank because the architecture is, so a fixed order and fixed bucket boundaries follow.

Every function takes the process group and is only called with more than one rank; the
single-process no-ops live in ``nasp.distributed.Dist``. ``unresponsive_ranks`` finds who is
missing after a collective failed. Nothing here waits on the host for the
device: the bucket layout comes from shapes, and the copies back are device ops.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from datetime import timedelta

import torch
import torch.distributed as dist

_TAG = 0x4E41  # point-to-point tag of the liveness check

# DDP's default bucket: large enough that per-call latency is paid a few times per step, small
# enough that a copy of one bucket is cheap next to the gradients themselves.
BUCKET_BYTES = 25 * 2**20


def nbytes(tensors: Sequence[torch.Tensor]) -> int:
    return sum(t.numel() * t.element_size() for t in tensors)


def buckets(tensors: Sequence[torch.Tensor], cap_bytes: int = BUCKET_BYTES
            ) -> list[list[torch.Tensor]]:
    """Tensors grouped by (device, dtype) - one flat buffer needs one of each - in their given
    order, cut into runs of at most ``cap_bytes`` (a larger tensor makes a bucket alone)."""
    groups: dict[tuple[torch.device, torch.dtype], list[torch.Tensor]] = {}
    for t in tensors:
        groups.setdefault((t.device, t.dtype), []).append(t)
    out: list[list[torch.Tensor]] = []
    for group in groups.values():
        current: list[torch.Tensor] = []
        size = 0
        for t in group:
            b = t.numel() * t.element_size()
            if current and size + b > cap_bytes:
                out.append(current)
                current, size = [], 0
            current.append(t)
            size += b
        if current:
            out.append(current)
    return out


def _flat(bucket: list[torch.Tensor]) -> tuple[torch.Tensor, bool]:
    """The bucket as one 1-d tensor, and whether it is a copy (a lone contiguous tensor is
    reduced in place, saving the copy in and out)."""
    if len(bucket) == 1 and bucket[0].is_contiguous():
        return bucket[0].view(-1), False
    return torch.cat([t.reshape(-1) for t in bucket]), True


def _unflatten(flat: torch.Tensor, bucket: list[torch.Tensor]) -> None:
    for t, part in zip(bucket, flat.split([t.numel() for t in bucket])):
        t.copy_(part.view_as(t))


def all_reduce_mean_(tensors: Sequence[torch.Tensor], group: dist.ProcessGroup | None,
                     world_size: int, cap_bytes: int = BUCKET_BYTES) -> int:
    """Replace every tensor by its mean over the ranks; returns the bytes reduced.

    SUM then divide: ``ReduceOp.AVG`` exists on NCCL only. All buckets are in flight at once
    before the first wait, so their transfers overlap."""
    pending = []
    for bucket in buckets(tensors, cap_bytes):
        if not bucket[0].is_floating_point() and not bucket[0].is_complex():
            raise TypeError(f"cannot average {bucket[0].dtype} tensors")
        flat, copied = _flat(bucket)
        work = dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group, async_op=True)
        pending.append((work, flat, copied, bucket))
    for work, flat, copied, bucket in pending:
        work.wait()
        flat.div_(world_size)
        if copied:
            _unflatten(flat, bucket)
    return nbytes(tensors)


def broadcast_(tensors: Sequence[torch.Tensor], group: dist.ProcessGroup | None, src: int,
               cap_bytes: int = BUCKET_BYTES) -> int:
    """Overwrite every tensor with the copy on global rank ``src`` (any dtype)."""
    pending = []
    for bucket in buckets(tensors, cap_bytes):
        flat, copied = _flat(bucket)
        work = dist.broadcast(flat, src=src, group=group, async_op=True)
        pending.append((work, flat, copied, bucket))
    for work, flat, copied, bucket in pending:
        work.wait()
        if copied:
            _unflatten(flat, bucket)
    return nbytes(tensors)


def average_exact_(tensors: Sequence[torch.Tensor], group: dist.ProcessGroup | None,
                   world_size: int, src: int) -> int:
    """Mean over ranks computed as ``x_src + mean(x_r - x_src)``: tensors that are already equal
    on every rank stay bit-for-bit unchanged (a plain sum/N can move them by one ulp at N = 3),
    so the running statistics of ops that never ran are untouched, as their weights are."""
    ref = [t.detach().clone() for t in tensors]
    sent = broadcast_(ref, group, src)
    diff = [t - r for t, r in zip(tensors, ref)]
    sent += all_reduce_mean_(diff, group, world_size)
    with torch.no_grad():
        for t, r, d in zip(tensors, ref, diff):
            t.copy_(r.add_(d))
    return sent


def sum_values(values: Mapping[str, torch.Tensor], group: dist.ProcessGroup | None
               ) -> dict[str, torch.Tensor]:
    """Sum metric accumulators over ranks in one call. Sent as float64, exact for counts below
    2^53, so a sharded evaluation counts exactly what one process would; each value keeps its
    dtype and shape."""
    if not values:
        return {}
    items = list(values.items())
    flat = torch.cat([v.detach().reshape(-1).to(torch.float64) for _, v in items])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM, group=group)
    parts = flat.split([v.numel() for _, v in items])
    return {k: p.view(v.shape).to(v.dtype) for (k, v), p in zip(items, parts)}


def checksums(tensors: Sequence[torch.Tensor]) -> torch.Tensor:
    """(n, 2) int64: per tensor the sum of its bytes and a position-weighted sum.

    Computed on the raw bytes, so any bit difference counts (a value compare would call -0.0
    and 0.0 equal, and NaN unequal to itself); integer sums are exact in any order, so the
    result does not depend on how the device reduces."""
    rows = []
    for t in tensors:
        b = t.detach().contiguous().view(-1).view(torch.uint8).to(torch.int64)
        w = torch.arange(b.numel(), device=b.device).remainder_(65521).add_(1)
        rows.append(torch.stack([b.sum(), (b * w).sum()]))
    if not rows:
        return torch.zeros(0, 2, dtype=torch.int64)
    return torch.stack(rows)


def unresponsive_ranks(side: dist.ProcessGroup, rank: int, ranks: Sequence[int],
                       timeout_s: float) -> list[int]:
    """Group ranks that do not answer on ``side`` (a gloo group kept for this), after a
    collective failed; ``ranks`` are the group's global ranks.

    Rank 0 waits for a message from each other rank, then tells the ones that answered what it
    found; the others send and wait for that verdict, so every survivor names the same ranks
    (or rank 0, when rank 0 itself is gone). A survivor may arrive here up to one timeout late
    (blocked on a peer that left the collective early), so rank 0 waits two timeouts, and the
    others three (rank 0 may be that late, then collecting)."""
    world, timeout = len(ranks), timedelta(seconds=timeout_s)
    if rank == 0:
        works, missing = {}, []
        for r in range(1, world):  # all posted before the first wait
            try:
                works[r] = dist.irecv(torch.zeros(1), src=ranks[r], group=side, tag=_TAG)
            except RuntimeError:  # its connection is already closed
                missing.append(r)
        deadline = time.monotonic() + 2 * timeout_s
        for r, work in works.items():
            try:
                work.wait(timedelta(seconds=max(deadline - time.monotonic(), 0.01)))
            except RuntimeError:
                missing.append(r)
        verdict = torch.zeros(world)
        verdict[missing] = 1.0
        for r in works:
            if r not in missing:
                try:
                    dist.isend(verdict, dst=ranks[r], group=side, tag=_TAG).wait(timeout)
                except RuntimeError:
                    missing.append(r)
        return sorted(missing)
    try:  # a gloo send completes only once the receiver has posted its receive
        dist.isend(torch.ones(1), dst=ranks[0], group=side, tag=_TAG).wait(3 * timeout)
        verdict = torch.zeros(world)
        dist.irecv(verdict, src=ranks[0], group=side, tag=_TAG).wait(3 * timeout)
    except RuntimeError:
        return [0]
    return [r for r, v in enumerate(verdict.tolist()) if v]
