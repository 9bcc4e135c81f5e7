"""Search tasks by name: what the loop trains on (``cnn`` images, ``lm`` language models)."""

from __future__ import annotations

import importlib
from typing import Any

import torch

from nasp.configs import SearchConfig
from nasp.errors import NaspError

# task -> "module:factory"; imported on use so image-only users never import text code.
TASKS = {"cnn": "nasp.tasks.image:build_image_task", "lm": "nasp.tasks.lm:build_lm_task"}
# task -> the global batch sizes (config fields) it splits over data-parallel ranks: the image
# task shards its training and validation batches; the language model also the columns of its
# evaluation batches, which carry hidden states and so cannot be split unevenly.
# A user model's task (``model``) shards whatever batches its iterables yield, row by row.
SHARDED_BATCHES = {"cnn": ("batch_size",), "lm": ("batch_size", "eval_batch_size"),
                   "model": ()}


def _check_task(cfg: SearchConfig) -> None:
    if cfg.task == "model":
        raise NaspError("task 'model' searches a model and data given from Python",
                        "call nasp.search(model=net, train=..., valid=..., loss=...); on the "
                        "command line, search your model with --space FILE.py:FUNCTION")
    if cfg.task not in TASKS:
        raise NaspError(f"unknown task {cfg.task!r}", f"use --task {' or '.join(TASKS)}")


def check_batches(cfg: SearchConfig, dist: Any) -> None:
    """Refuse a global batch of ``cfg``'s task that does not split evenly over ``dist``'s ranks
    (a ``nasp.distributed.Dist``); cheap, so the search loop calls it before any data is read
    or any folder written, without knowing which task runs."""
    if cfg.task not in SHARDED_BATCHES:
        _check_task(cfg)
    for key in SHARDED_BATCHES[cfg.task]:
        dist.local_batch(getattr(cfg, key), "--" + key.replace("_", "-"))


def build_task(cfg: SearchConfig, device: torch.device, dist: Any = None):
    """The task of ``cfg``; with ``dist`` (a ``nasp.distributed.Dist``) each rank reads its
    shard of every batch and evaluations are summed over ranks."""
    _check_task(cfg)
    module, factory = TASKS[cfg.task].split(":")
    return getattr(importlib.import_module(module), factory)(cfg, device, dist)
