"""Per-phase timing without a host-device sync per step.

On CUDA each phase boundary records an event; elapsed times are read once per epoch. On the
CPU work is synchronous, so ``perf_counter`` is exact.
"""

from __future__ import annotations

import time

import torch


class PhaseTimer:
    def __init__(self, device: torch.device) -> None:
        self.cuda = device.type == "cuda"
        self.totals: dict[str, float] = {}
        self._pending: list[tuple[str, object, object]] = []
        self._mark: object = None

    def _now(self) -> object:
        if self.cuda:
            ev = torch.cuda.Event(enable_timing=True)
            ev.record()
            return ev
        return time.perf_counter()

    def start(self) -> None:
        self._mark = self._now()

    def lap(self, phase: str) -> None:
        """Charge the time since the last mark to ``phase`` and set a new mark."""
        now = self._now()
        if self.cuda:
            self._pending.append((phase, self._mark, now))
        else:
            self.totals[phase] = self.totals.get(phase, 0.0) + (now - self._mark)  # type: ignore[operator]
        self._mark = now

    def collect(self) -> dict[str, float]:
        """Seconds per phase since the last collect (one sync on CUDA)."""
        if self.cuda and self._pending:
            torch.cuda.synchronize()
            for phase, a, b in self._pending:
                self.totals[phase] = self.totals.get(phase, 0.0) + a.elapsed_time(b) / 1000.0  # type: ignore[attr-defined]
            self._pending.clear()
        out, self.totals = self.totals, {}
        return out


def peak_memory_mb(device: torch.device) -> float | None:
    """Peak device memory on CUDA; peak resident set size of the process on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    try:
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB
    except (ImportError, OSError):
        return None
