"""Choosing the training device from a ``--device`` option, with an actionable error, the
memory format networks and batches use on it, the process-wide CPU allocator setting the
language-model runs need, and the record of where a run's times were measured."""

from __future__ import annotations

import contextlib
import ctypes
import platform
import sys
from contextlib import AbstractContextManager
from typing import Any

import torch

from nasp.errors import NaspError


def resolve_device(name: str) -> torch.device:
    """``auto`` picks CUDA when present; a CUDA request without a GPU is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise NaspError(f"unknown device {name!r}", "use --device auto, cpu or cuda[:N]") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NaspError("--device cuda was asked for but no CUDA GPU is available",
                        "use --device cpu (or auto)")
    return dev


MEMORY_FORMATS = ("auto", "channels_last", "contiguous")

# What ``--memory-format auto`` resolves to, per device type. Measured, not assumed (torch 2.13,
# one thread of an AMD EPYC (Zen 3) CPU, ms per call at search size 64x16x32x32, NCHW -> NHWC):
# torch's max pool 3x3 34 -> 5.4, avg pool 3x3 19 -> 6.2, depthwise 3x3 forward 1.1 -> 0.6 and
# input gradient 10.4 -> 1.0, BN 2.5 -> 1.0; whole steps: a NASP search iteration 11 -> 5.8 s,
# the DARTS_V2 evaluation network 5.0 -> 6.0 training and 23.7 -> 30.9 inference images/s
# (issue 14, quiet machine). Nothing measured got slower. cuDNN's tensor-core kernels want NHWC
# as well. Other devices (mps, xpu, ...) keep torch's default until someone measures them.
_CHANNELS_LAST_DEVICES = ("cpu", "cuda")


def resolve_memory_format(device: torch.device | str, value: str = "auto") -> torch.memory_format:
    """The memory format of 4-D activations, weights and batches on ``device``.

    ``auto`` is a fixed per-device-type choice rather than a start-up measurement, so two runs of
    one config compute the same numbers; record :func:`memory_format_name` of the result in the
    run's config so a resumed run uses it even if this default changes."""
    if value == "channels_last":
        return torch.channels_last
    if value == "contiguous":
        return torch.contiguous_format
    if value != "auto":
        raise NaspError(f"unknown memory format {value!r}",
                        "use --memory-format " + ", ".join(MEMORY_FORMATS))
    kind = torch.device(device).type
    return torch.channels_last if kind in _CHANNELS_LAST_DEVICES else torch.contiguous_format


def memory_format_name(fmt: torch.memory_format) -> str:
    """The ``--memory-format`` value that resolves to ``fmt`` (for config.json)."""
    if fmt == torch.channels_last:
        return "channels_last"
    if fmt == torch.contiguous_format:
        return "contiguous"
    raise ValueError(f"unsupported memory format for images: {fmt}")


def resolve_amp(device: torch.device | str, value: bool | None = None) -> bool:
    """Whether weight steps run under bf16 autocast: ``None`` means on CUDA only (on the CPU
    bf16 is slower wherever the cores lack bf16 arithmetic, and float32 is exact enough)."""
    return torch.device(device).type == "cuda" if value is None else bool(value)


def autocast(device: torch.device | str, enabled: bool) -> AbstractContextManager:
    """bf16 autocast on ``device`` when ``enabled``, else a no-op. Wrap the weight step's
    forward (and loss) only: NASP's and DARTS's architecture gradients stay in float32, since
    Ā's gradients are sums over the whole batch where bf16's 8-bit mantissa would show."""
    if not enabled:
        return contextlib.nullcontext()
    return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)


def tune_cpu_allocator() -> None:
    """Keep large freed blocks in the heap (glibc only; a no-op elsewhere).

    glibc hands every freed block above 32 MiB back to the OS, so the (tokens x vocabulary)
    tensors of every LM step are mapped and page-faulted afresh: measured 0.14 s of system time
    per step on a 0.34 s step (PTB, nhid 128, batch 64). With the mmap and trim thresholds at
    1 GiB they are reused: 0.016 s. Process-wide, so only done for CPU runs."""
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 1 << 30)  # M_MMAP_THRESHOLD
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD
    except (OSError, AttributeError):  # not glibc
        pass


def device_info(device: torch.device) -> dict[str, Any]:
    """What a time measured on ``device`` depends on: its kind, its model, torch's threads."""
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else _cpu_name()
    return {"type": device.type, "name": name, "threads": torch.get_num_threads()}


def _cpu_name() -> str:
    """The CPU's model ("AMD EPYC 7763 64-Core Processor"), where Linux says it; else what
    ``platform`` knows (often only the architecture)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name") and ":" in line:
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: torch.device, world_size: int = 1) -> dict[str, Any]:
    """Where a run's times and memory were measured (``result.json`` ``environment``): a search
    time says little without the device, its threads, the number of processes and the
    releases; ``nasp compare`` names them under its table and says when runs differ."""
    from nasp.version import __version__

    return {"device": device_info(device), "world_size": world_size, "torch": torch.__version__,
            "python": platform.python_version(), "nasp": __version__}


def describe_environment(env: dict[str, Any]) -> str:
    """``environment()`` in one line, for tables."""
    dev = env.get("device") or {}
    threads = dev.get("threads")
    where = f"{dev.get('name') or dev.get('type', '?')} ({dev.get('type', '?')}"
    if dev.get("type") == "cpu" and threads:
        where += f", {threads} thread{'s' if threads != 1 else ''}"
    procs = env.get("world_size", 1)
    return (f"{where}), {procs} process{'es' if procs != 1 else ''}, torch {env.get('torch')}, "
            f"nasp {env.get('nasp')}")
