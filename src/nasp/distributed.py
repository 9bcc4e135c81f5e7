"""Data-parallel runs on torch.distributed: the process group, and what the loops ask of it.

``init_distributed()`` reads torchrun's environment (RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR, MASTER_PORT), or reuses a group the caller made, and returns a ``Dist``: rank,
world size, device, ``is_main``, and the collectives a data-parallel search needs (gradient and
architecture-gradient averaging, broadcast at start, batch-norm statistics, metric sums, a sync
check). Without torchrun it is a single process and every collective is a no-op, so a loop
calls them unconditionally. NCCL drives CUDA (one GPU per process, from LOCAL_RANK), gloo CPU.

A rank that dies or hangs must not block the others forever: every collective runs under the
group's timeout, and when one fails each survivor looks at the others' signs of life
(``nasp.heartbeat``: a counter each process bumps from a thread of its own) and raises
``RankFailure`` naming the ranks that stopped or are stuck elsewhere, within the timeout plus a
few seconds. Without a key-value store to beat in, the survivors ask each other instead, over
a separate small gloo group (two or three timeouts).
(On NCCL a timed-out collective is usually ended by NCCL's own watchdog, whose log names the
collective; the diagnosis here covers whatever error reaches Python.)
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

import torch
import torch.distributed as dist
from torch import nn

from nasp import collectives as coll
from nasp.device import resolve_device
from nasp.errors import NaspError
from nasp.heartbeat import Heartbeat

DEFAULT_TIMEOUT_S = 600.0
T = TypeVar("T")


class RankFailure(NaspError):
    """A collective failed because another rank died, hung or diverged."""


class Dist:
    """One process's place in a data-parallel run (a single process: rank 0 of 1).

    ``bytes_reduced`` counts the bytes of the tensors this rank has all-reduced so far
    (gradients and architecture gradients; the payload, not what the ring algorithm puts on
    the wire), for the scaling benchmark."""

    def __init__(self, rank: int = 0, world_size: int = 1, device: torch.device | str = "cpu",
                 *, local_rank: int = 0, group: dist.ProcessGroup | None = None,
                 backend: str | None = None, timeout_s: float = DEFAULT_TIMEOUT_S,
                 owns_group: bool = False, bucket_bytes: int = coll.BUCKET_BYTES) -> None:
        self.rank, self.world_size, self.local_rank = rank, world_size, local_rank
        self.device = torch.device(device)
        self.group, self.backend, self.timeout_s = group, backend, float(timeout_s)
        self.owns_group, self.bucket_bytes = owns_group, bucket_bytes
        self.bytes_reduced = 0
        self._side: dist.ProcessGroup | None = None
        self._heartbeat: Heartbeat | None = None
        if world_size > 1:
            ranks = dist.get_process_group_ranks(group) if group is not None else None
            self._src = ranks[0] if ranks else 0
            # gloo even beside NCCL: point-to-point with a timeout, usable after the main
            # group failed; use_local_synchronization lets a caller's subgroup make it alone
            self._side = dist.new_group(ranks=ranks or list(range(world_size)), backend="gloo",
                                        timeout=timedelta(seconds=self.timeout_s),
                                        use_local_synchronization=True)
            self._ranks = ranks or list(range(world_size))
            # signs of life, so a stopped rank is named within the timeout plus a few seconds
            self._heartbeat = Heartbeat.start(self._ranks, self._ranks[rank], self.timeout_s)

    # --- who am I ---------------------------------------------------------------------------
    @property
    def enabled(self) -> bool:
        """True when there is more than one rank (collectives do something)."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 writes the run folder and prints progress."""
        return self.rank == 0

    def __repr__(self) -> str:
        return (f"Dist(rank={self.rank}, world_size={self.world_size}, device={self.device}, "
                f"backend={self.backend})")

    # --- reductions -------------------------------------------------------------------------
    def reduce_gradients(self, params: Iterable[torch.Tensor]) -> int:
        """Average ``p.grad`` over ranks for every parameter that has one, in the given order;
        parameters without a gradient keep ``None`` (so SGD skips them on every rank). Call
        after ``backward()`` and before clipping. Returns the bytes reduced."""
        return self._average([p.grad for p in params])

    def average_(self, tensors: Sequence[torch.Tensor | None]) -> None:
        """Replace each tensor by its mean over ranks, in place; ``None`` entries are skipped.

        The hook for architecture gradients (``ArchContext.reduce``): NASP's ∇Ā, DARTS's ∇α,
        the unrolled step's weight gradients. Every rank must pass the same shapes in the same
        order."""
        self._average(tensors)

    def _average(self, tensors: Sequence[torch.Tensor | None]) -> int:
        present = [t for t in tensors if t is not None]
        if not self.enabled or not present:
            return 0
        if any(t.is_sparse for t in present):
            raise TypeError("sparse gradients are not supported")
        with self._guard("all_reduce"):
            sent = coll.all_reduce_mean_(present, self.group, self.world_size, self.bucket_bytes)
        self.bytes_reduced += sent
        return sent

    def broadcast_(self, tensors: Iterable[torch.Tensor]) -> None:
        """Overwrite the tensors with rank 0's copies."""
        tensors = list(tensors)
        if self.enabled and tensors:
            with self._guard("broadcast"), torch.no_grad():
                coll.broadcast_(tensors, self.group, self._src, self.bucket_bytes)

    def broadcast_state(self, module: nn.Module, extra: Iterable[torch.Tensor] = ()) -> None:
        """Rank 0's parameters, buffers and ``extra`` (architecture parameters) on every rank,
        at the start of a run. A strategy that derives state from its parameters (NASP's Ā)
        must recompute it afterwards."""
        self.broadcast_([*module.parameters(), *module.buffers(), *extra])

    def average_buffers(self, module: nn.Module) -> None:
        """Average floating-point buffers (batch-norm running statistics) over ranks, before
        validation and checkpoints: each rank saw only its shard. Buffers already equal on
        every rank (ops that never ran) stay bit-identical."""
        buffers = [b for b in module.buffers() if b.is_floating_point()]
        if self.enabled and buffers:
            with self._guard("average buffers"):
                coll.average_exact_(buffers, self.group, self.world_size, self._src)

    def sum_metrics(self, sums: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric accumulators (loss sums, correct counts, sample counts) summed over ranks, so
        a sharded evaluation reports the whole split."""
        if not self.enabled:
            return dict(sums)
        with self._guard("sum metrics"):
            return coll.sum_values(sums, self.group)

    def check_sync(self, named: Mapping[str, torch.Tensor], where: str = "") -> None:
        """Raise ``NaspError`` naming the tensors that are not bit-identical on every rank
        (``--check-sync``: architecture parameters and weights, once per epoch)."""
        if not self.enabled or not named:
            return
        mine = coll.checksums(list(named.values())).to(self.device)
        gathered = [torch.empty_like(mine) for _ in range(self.world_size)]
        with self._guard("check sync"):
            dist.all_gather(gathered, mine, group=self.group)
        table = torch.stack(gathered).cpu()  # (ranks, tensors, 2); a sync, once per check
        differ = (table != table[0]).any(dim=2)  # (ranks, tensors)
        bad = differ.any(dim=0).nonzero().flatten().tolist()
        if not bad:
            return
        names = list(named)
        lines = []
        for i in bad[:5]:
            ranks = ", ".join(map(str, differ[:, i].nonzero().flatten().tolist()))
            lines.append(f"{names[i]} (rank {ranks} differs from rank 0)")
        more = f" and {len(bad) - 5} more" if len(bad) > 5 else ""
        at = f" {where}" if where else ""
        raise NaspError(f"ranks are out of sync{at}: {len(bad)} of {len(names)} tensors differ: "
                        + "; ".join(lines) + more,
                        "every rank should hold the same weights and architecture; this is a "
                        "bug in nasp (or non-deterministic kernels), please report it")

    @contextmanager
    def setup(self) -> Iterator[None]:
        """Around a run's set-up (options, data, run folder): a rank whose set-up raises tells
        the others, which then stop with a clear error instead of waiting in the first
        collective until the timeout."""
        try:
            yield
        except BaseException:
            self.any_failed(True)
            raise
        if self.any_failed(False):
            raise NaspError("another process of this run failed to start", "see its error")

    def any_failed(self, failed: bool) -> bool:
        """Whether any rank reports a failure: every rank calls this at the same point, after
        its own set-up, so a rank whose set-up raised does not leave the others waiting in the
        next collective until the timeout."""
        if not self.enabled:
            return failed
        flag = torch.tensor(float(failed), device=self.device)
        return bool(self.sum_metrics({"failed": flag})["failed"] > 0)

    def from_main(self, make: Callable[[], T]) -> T:
        """``make()`` run on rank 0 only, and its value on every rank; a ``NaspError`` it
        raises is raised on every rank. For decisions the ranks must agree on but might see
        differently: the files of a run folder look different from machines with node-local
        disks, or through a network filesystem's stale cache, and ranks that chose
        differently (one reusing a finished run, another starting it) would wait for each
        other until the timeout. ``make``'s value must pickle (it crosses the gloo group). Any
        other exception is raised as it is on rank 0 and named on the others."""
        if not self.enabled:
            return make()
        box: list[Any] = [None]
        failure: BaseException | None = None
        if self.rank == 0:
            try:
                box[0] = ("value", make())
            except NaspError as e:
                failure, box[0] = e, ("error", e.message, e.hint)
            except Exception as e:  # told to the others before it is raised here
                failure = e
                box[0] = ("error", f"rank 0 failed: {type(e).__name__}: {e}", "see its error")
        with self._guard("broadcast"):
            dist.broadcast_object_list(box, src=self._src, group=self._side)
        if failure is not None:
            raise failure
        if box[0][0] == "error":
            raise NaspError(box[0][1], box[0][2])
        return box[0][1]

    def barrier(self) -> None:
        """Wait for every rank; a rank missing after the timeout is named."""
        if self.enabled:  # on the gloo side group: no CUDA device to guess for NCCL
            with self._guard("barrier"):
                dist.barrier(group=self._side)

    # --- sharding ---------------------------------------------------------------------------
    def local_batch(self, global_batch: int, option: str = "--batch-size") -> int:
        return local_batch_size(global_batch, self.world_size, option)

    def batch_rows(self, step: int, global_batch: int) -> tuple[int, int]:
        """This rank's rows of global batch ``step`` in the epoch's sample order."""
        return shard_rows(step, global_batch, self.rank, self.world_size)

    def eval_range(self, n: int) -> tuple[int, int]:
        """This rank's contiguous part of an ``n``-sample evaluation split."""
        return split_range(n, self.rank, self.world_size)

    # --- failure handling -------------------------------------------------------------------
    @contextmanager
    def _guard(self, what: str) -> Iterator[None]:
        if self._heartbeat is not None:
            self._heartbeat.entered += 1  # the same count on every rank at the same collective
        try:
            yield
        except torch.cuda.OutOfMemoryError:
            raise  # this rank's own trouble, not a peer's
        except RuntimeError as exc:  # DistBackendError and gloo's errors are RuntimeErrors
            missing = self._unresponsive()
            # gloo's first sentence, without its source-file prefix
            cause = re.sub(r"^\[[^\]]*\]\s*", "", str(exc).strip()).split(". ")[0][:200]
            if missing:
                who = ", ".join(map(str, missing))
                where = self._heartbeat.describe(missing[0]) if self._heartbeat else ""
                raise RankFailure(
                    f"rank {self.rank}: {what} failed: rank {who} stopped answering (dead, or "
                    f"stuck for over {self.timeout_s:g} s; {cause})",
                    f"see the output of rank {missing[0]}" + (f" ({where})" if where else "")
                    + "; if it was only slow, raise the collective timeout") from exc
            raise RankFailure(
                f"rank {self.rank}: {what} failed although every rank answered ({cause})",
                "the ranks ran different collectives: a bug in nasp, please report it") from exc

    def _unresponsive(self) -> list[int]:
        if self._side is None:
            return []
        if self._heartbeat is not None:  # signs of life: a few seconds, nobody must answer
            stopped = self._heartbeat.stopped()
            if stopped is not None:
                return stopped
        return coll.unresponsive_ranks(self._side, self.rank, self._ranks, self.timeout_s)

    def close(self) -> None:
        """Destroy the groups this object made (not a caller's group)."""
        if self._heartbeat is not None:
            self._heartbeat.close()
            self._heartbeat = None
        if self._side is not None:
            dist.destroy_process_group(self._side)
            self._side = None
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()
            self.owns_group = False

    def __enter__(self) -> Dist:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def check_resume_world(saved: int | None, world_size: int) -> None:
    """A run resumes at the world size it was checkpointed with: the global batch splits the
    same way only then, so the resumed run ends as an uninterrupted one would."""
    saved = saved or 1  # checkpoints from before data parallelism: one process
    if saved == world_size:
        return
    how = ("without torchrun (one process)" if saved == 1
           else f"with {saved} processes in all (torchrun --nproc-per-node {saved}, or "
                "--nnodes x --nproc-per-node giving that many)")
    raise NaspError(f"the checkpoint was written by {saved} process(es), this run has "
                    f"{world_size}", f"resume {how}")


# --- sharding a global batch -------------------------------------------------------------------
def local_batch_size(global_batch: int, world_size: int, option: str = "--batch-size") -> int:
    """The per-rank batch: ``--batch-size`` is the global batch at every world size, so the
    paper's hyperparameters hold; one that does not split evenly is refused."""
    if global_batch % world_size == 0 and global_batch >= world_size:
        return global_batch // world_size
    lower = global_batch // world_size * world_size
    sizes = [s for s in (lower, lower + world_size) if s > 0]
    raise NaspError(f"{option} {global_batch} does not split evenly over {world_size} ranks",
                    f"use a multiple of {world_size}, e.g. {' or '.join(map(str, sizes))}")


def shard_rows(step: int, global_batch: int, rank: int, world_size: int) -> tuple[int, int]:
    """Rows ``[lo, hi)`` of the epoch's sample order that rank ``rank`` reads for batch ``step``.

    The order and the augmentation draws come from ``(seed, epoch)`` (``DeviceLoader``), so a
    rank's shard depends on (seed, epoch, step, rank) only, the shards of a step are disjoint,
    and together they are exactly the batch one process would read."""
    per = local_batch_size(global_batch, world_size)
    lo = step * global_batch + rank * per
    return lo, lo + per


def split_range(n: int, rank: int, world_size: int) -> tuple[int, int]:
    """A contiguous part of ``n`` evaluation samples; parts differ by at most one sample and
    cover all ``n``, so summed metrics are over the whole split."""
    return n * rank // world_size, n * (rank + 1) // world_size


# --- the process group -------------------------------------------------------------------------
def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise NaspError(f"environment variable {name}={value!r} is not a whole number",
                        "launch with torchrun, which sets it") from None


def _rank_device(device: str | torch.device, local_rank: int) -> torch.device:
    """One GPU per process: CUDA ordinal = LOCAL_RANK (an explicit cuda:N is ignored)."""
    dev = resolve_device(str(device))
    if dev.type != "cuda":
        return dev
    count = torch.cuda.device_count()
    if local_rank >= count:
        raise NaspError(f"LOCAL_RANK {local_rank} needs GPU {local_rank}, but only {count} "
                        "GPU(s) are visible", f"start at most {count} processes per node "
                        f"(torchrun --nproc-per-node {count})")
    torch.cuda.set_device(local_rank)
    return torch.device("cuda", local_rank)


def init_distributed(device: str | torch.device = "auto", *,
                     timeout_s: float = DEFAULT_TIMEOUT_S,
                     group: dist.ProcessGroup | None = None) -> Dist:
    """The ``Dist`` of this process: a group the caller made (``group``, or the default group
    when one is initialized) is reused and left open; otherwise torchrun's environment with
    WORLD_SIZE > 1 starts a group (NCCL on CUDA, gloo on CPU) that ``Dist.close()`` ends;
    otherwise a single process on ``device``."""
    local_rank = _env_int("LOCAL_RANK") or 0
    if group is not None or (dist.is_available() and dist.is_initialized()):
        backend = str(dist.get_backend(group))
        if "nccl" in backend:
            index = local_rank if "LOCAL_RANK" in os.environ else torch.cuda.current_device()
            dev = torch.device("cuda", index)
        else:
            dev = resolve_device(str(device))
        return Dist(dist.get_rank(group), dist.get_world_size(group), dev,
                    local_rank=local_rank, group=group, backend=backend, timeout_s=timeout_s)
    world = _env_int("WORLD_SIZE") or 1
    if world <= 1:
        return Dist(0, 1, resolve_device(str(device)))
    rank = _env_int("RANK")
    missing = [k for k in ("MASTER_ADDR", "MASTER_PORT") if not os.environ.get(k)]
    if rank is None or missing:
        raise NaspError(f"WORLD_SIZE={world} is set but {', '.join(missing or ['RANK'])} is not",
                        "launch with torchrun --nproc-per-node N -m nasp ..., which sets them")
    if not dist.is_available():
        raise NaspError("this torch build has no torch.distributed",
                        "install a torch build with distributed support, or run one process")
    dev = _rank_device(device, local_rank)
    backend = "nccl" if dev.type == "cuda" else "gloo"
    dist.init_process_group(backend, rank=rank, world_size=world,
                            timeout=timedelta(seconds=timeout_s))
    return Dist(rank, world, dev, local_rank=local_rank, group=None, backend=backend,
                timeout_s=timeout_s, owns_group=True)


def launched_together() -> bool:
    """Whether this process is one of several: under torchrun with WORLD_SIZE > 1, or inside
    a process group the caller made."""
    if dist.is_available() and dist.is_initialized():
        return True
    try:
        return (_env_int("WORLD_SIZE") or 1) > 1
    except NaspError:  # a malformed WORLD_SIZE: init_distributed reports it
        return True


def is_main_process() -> bool:
    """Whether this process is rank 0 (or the only process), also after a run has closed its
    group: what prints a command's final lines, so that ``torchrun --nproc-per-node 8`` shows
    the found genotype once, not eight times. A group still open (the caller's) decides, else
    torchrun's RANK."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank() == 0
    try:
        return (_env_int("RANK") or 0) == 0
    except NaspError:  # a malformed RANK: the run itself reports it
        return True
