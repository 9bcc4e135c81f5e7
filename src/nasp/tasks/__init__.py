"""Search tasks by name: what the loop trains on (``cnn`` images, ``lm`` language models)."""

from __future__ import annotations

import importlib

import torch

from nasp.config import SearchConfig
from nasp.errors import NaspError

# task -> "module:factory"; imported on use so image-only users never import text code.
TASKS = {"cnn": "nasp.tasks.image:build_image_task", "lm": "nasp.tasks.lm:build_lm_task"}


def build_task(cfg: SearchConfig, device: torch.device):
    if cfg.task not in TASKS:
        raise NaspError(f"unknown task {cfg.task!r}", f"use --task {' or '.join(TASKS)}")
    module, factory = TASKS[cfg.task].split(":")
    return getattr(importlib.import_module(module), factory)(cfg, device)
