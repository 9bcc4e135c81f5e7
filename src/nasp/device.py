"""Choosing the training device from a ``--device`` option, with an actionable error."""

from __future__ import annotations

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
