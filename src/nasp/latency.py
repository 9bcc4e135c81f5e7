"""Measuring the latency of modules on a device: warm-up, then the median of repeats.

One call of a small op at batch 1 lasts microseconds, below what a single clock reading
resolves reliably, so each repeat runs the call ``number`` times (chosen once per call, so
that a repeat lasts at least ``min_repeat_s``) and records the mean of those calls; the result
is the median over repeats. Several calls timed together are timed round-robin (one repeat of
each, then the next round), so a burst of load from another process slows one repeat of many
calls rather than every repeat of one call, and the medians stay comparable. On CUDA the
device is synchronised before each clock reading, so queued kernels are counted.

``clock="wall"`` (the default) measures elapsed time: latency as a user sees it. On a machine
shared with other busy processes, elapsed time includes the time the scheduler gave them;
``clock="cpu"`` measures this process's CPU time instead, which with one thread
(``torch.set_num_threads(1)``) on an idle machine is the same figure, and on a busy one is
far less disturbed (CPU only; with several threads it sums them, so it is not latency).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

MAX_NUMBER = 1 << 14
MIN_REPEAT_S = 2e-3  # a repeat runs a call this long at least (tests set it to 0)


@dataclass(frozen=True)
class Timing:
    """Seconds per call: the median over repeats, and the spread (interquartile range)."""

    median_s: float
    iqr_s: float
    repeats: int
    number: int

    @property
    def ms(self) -> float:
        return self.median_s * 1e3


def _sync(device: torch.device) -> Callable[[], None]:
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def _run(fn: Callable[[], object], number: int, sync: Callable[[], None],
         clock: Callable[[], float]) -> float:
    start = clock()
    for _ in range(number):
        fn()
    sync()
    return clock() - start


def _clock(name: str, device: torch.device) -> Callable[[], float]:
    from nasp.errors import NaspError

    if name not in CLOCKS:
        raise NaspError(f"unknown clock {name!r}", "use --clock wall or cpu")
    if name == "cpu" and device.type != "cpu":
        raise NaspError("--clock cpu measures CPU time; GPU kernels need --clock wall",
                        "use --clock wall with --device cuda")
    return CLOCKS[name]


def time_calls(calls: Sequence[Callable[[], object]], device: torch.device, warmup: int = 5,
               repeats: int = 20, min_repeat_s: float | None = None,
               clock: str = "wall") -> list[Timing]:
    """The time one call of each of ``calls`` takes on ``device`` (see the module doc)."""
    sync, now = _sync(device), _clock(clock, device)
    min_repeat_s = MIN_REPEAT_S if min_repeat_s is None else min_repeat_s
    numbers = []
    for fn in calls:
        for _ in range(warmup):
            fn()
        sync()
        number = 1  # calibrate: double the calls per repeat until a repeat is long enough
        while _run(fn, number, sync, now) < min_repeat_s and number < MAX_NUMBER:
            number *= 2
        numbers.append(number)
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for i, fn in enumerate(calls):
            times[i].append(_run(fn, numbers[i], sync, now) / numbers[i])
    out = []
    for ts, number in zip(times, numbers):
        q = statistics.quantiles(ts, n=4) if len(ts) > 1 else [ts[0]] * 3
        out.append(Timing(statistics.median(ts), q[2] - q[0], repeats, number))
    return out


def modules_latency(items: Sequence[tuple[nn.Module, tuple[torch.Tensor, ...]]],
                    device: torch.device, warmup: int = 5, repeats: int = 20,
                    clock: str = "wall") -> list[Timing]:
    """Inference latency of each ``module(*inputs)`` in eval mode without autograd."""
    calls = []
    for module, inputs in items:
        m = module.to(device).eval()
        xs = tuple(x.to(device) for x in inputs)
        calls.append(lambda m=m, xs=xs: m(*xs))
    with torch.inference_mode():
        return time_calls(calls, device, warmup, repeats, clock=clock)


def module_latency(module: nn.Module, inputs: tuple[torch.Tensor, ...], device: torch.device,
                   warmup: int = 5, repeats: int = 20, clock: str = "wall") -> Timing:
    return modules_latency([(module, inputs)], device, warmup, repeats, clock)[0]
