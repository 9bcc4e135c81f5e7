"""Search tasks by name: what the loop trains on (``cnn`` images, ``lm`` language models)."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from nasp.configs import SearchConfig
from nasp.errors import NaspError

# task -> "module:factory"; imported on use so image-only users never import text code.
TASKS = {"cnn": "nasp.tasks.image:build_image_task", "lm": "nasp.tasks.lm:build_lm_task"}


def build_task(cfg: SearchConfig, device: torch.device, dist: Any = None):
    """The task of ``cfg``; with ``dist`` (a ``nasp.distributed.Dist``) each rank reads its
    shard of every batch and evaluations are summed over ranks."""
    if cfg.task not in TASKS:
        raise NaspError(f"unknown task {cfg.task!r}", f"use --task {' or '.join(TASKS)}")
    module, factory = TASKS[cfg.task].split(":")
    return getattr(importlib.import_module(module), factory)(cfg, device, dist)
