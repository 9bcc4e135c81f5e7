"""The Python API: the jobs of the command line, in a few lines.

>>> import nasp
>>> res = nasp.search(strategy="nasp", space="nasp-7", preset="quick", out="runs/demo")
>>> print(res.genotype)
>>> result = nasp.train(genotype="runs/demo", preset="quick", out="runs/demo-train")
>>> nasp.resume("runs/demo")            # continue an interrupted run of any kind

Options are the fields of ``nasp.configs.SearchConfig``, ``TrainConfig`` (``task="cnn"``) and
``LMTrainConfig`` (``task="lm"``), resolved ``defaults < preset < config file < options``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from torch import nn

from nasp.configs import (
    LMTrainConfig,
    SearchConfig,
    TrainConfig,
    read_run_config,
    resolve,
    resolve_resume,
    run_kind,
)
from nasp.configs.base import resume_command
from nasp.errors import NaspError
from nasp.loops.search import SearchResult, run_search

TRAIN_CONFIGS = {"cnn": TrainConfig, "lm": LMTrainConfig}


def search(config: str | os.PathLike | None = None, overwrite: bool = False,
           progress: bool = True, *, model: nn.Module | None = None,
           train: Iterable[Any] | None = None, valid: Iterable[Any] | None = None,
           loss: Callable[[nn.Module, Any], Any] | None = None,
           metrics: Callable[[nn.Module, Any], Any] | None = None,
           **options: Any) -> SearchResult:
    """Resolve options and run a search. ``out`` names the run folder (default
    runs/<strategy>-<space>-<data>-s<seed>); ``out=False`` keeps everything in memory.

    Your own model: ``model`` (an ``nn.Module`` holding ``nasp.Choice`` / ``nasp.InputChoice``),
    ``train`` and ``valid`` (iterables of batches, e.g. DataLoaders: weights learn on one,
    the architecture on the other), ``loss(model, batch) -> scalar tensor`` and optionally
    ``metrics(model, batch) -> {name: scalar tensor}`` (averaged over ``valid`` each epoch).
    The model is trained in place; ``result.arch`` is the architecture found (a plain dict,
    also ``arch.json`` in the run folder) and ``nasp.fix(model, result.arch)`` the network.
    Every strategy and option of the image search applies (``strategy``, ``epochs``, ``seed``,
    ``lr``, ``arch_lr``, ``lambda_cost``, ``device``, ...)."""
    write = options.pop("out", None)
    if write == "":  # not the default folder: an empty path is a mistake, not "not given"
        raise NaspError("invalid out: ''", "give --out a folder, or leave it out for the default "
                        "folder")
    factory = _model_task(model, train, valid, loss, metrics, options)
    cfg = resolve(SearchConfig, options, config)
    if write is False:
        return run_search(cfg, None, progress=progress, task_factory=factory)
    cfg.out = str(write or cfg.out or cfg.default_out())
    return run_search(cfg, cfg.out, overwrite=overwrite, progress=progress,
                      task_factory=factory)


def _model_task(model: nn.Module | None, train: Any, valid: Any, loss: Any, metrics: Any,
                options: dict[str, Any]) -> Any:
    """The task factory of a search on a user's model and batches (``None`` without one);
    sets the options that say so (task ``model``)."""
    given = {k: v is not None for k, v in
             (("model", model), ("train", train), ("valid", valid), ("loss", loss))}
    if not any(given.values()) and metrics is None:
        return None
    missing = [k for k, v in given.items() if not v]
    if missing:
        raise NaspError(f"a search of your own model needs {', '.join(missing)} too",
                        "pass model=, train=, valid= and loss= together (or search nasp's "
                        "image data with space='FILE.py:FUNCTION')")
    for key, value in (("task", "model"), ("space", "model"), ("data", "python")):
        if options.get(key, value) != value:
            raise NaspError(f"{key}={options[key]!r} does not go with model=",
                            f"leave {key} out: a search of model= runs on your own batches")
        options[key] = value
    from nasp.tasks.model import ModelSearchTask

    def factory(cfg: SearchConfig, device: Any, dist: Any) -> ModelSearchTask:
        return ModelSearchTask(cfg, device, dist, model, train, valid, loss, metrics)

    return factory


def search_or_continue(config: str | os.PathLike | None = None, progress: bool = True,
                       **options: Any) -> tuple[dict[str, Any], str]:
    """The search ``options`` describe, in ``out``, done at most once: a finished run there is
    reused, an interrupted one resumed, a missing one started. A run made with other options
    is refused. Returns its result.json and what was done ("reused", "resumed" or "ran"); what
    ``nasp compare`` and a scheduler re-running a job need."""
    from nasp.distributed import Dist, init_distributed, launched_together

    cfg = resolve(SearchConfig, options, config)
    out = Path(cfg.out or cfg.default_out())
    # several processes (torchrun): rank 0 looks at the folder and every rank does what it
    # found (Dist.from_main); the search below reuses this process group
    with (init_distributed(cfg.device, timeout_s=cfg.dist_timeout) if launched_together()
          else Dist()) as d:
        how, result = d.from_main(lambda: _state_of(out, cfg))
        if how == "reused":
            return result, how
        if how == "resumed":  # with its checkpoint's threads, unless told otherwise
            threads = {"threads": cfg.threads} if options.get("threads") is not None else {}
            return resume(out, progress=progress, command="search", **threads).result, how
        # nothing to continue (at most a config.json of a run that died before its first epoch)
        options = {**options, "out": str(out)}
        return search(config=config, overwrite=True, progress=progress, **options).result, how


def _state_of(out: Path, cfg: SearchConfig) -> tuple[str, dict[str, Any] | None]:
    """What ``search_or_continue`` does with folder ``out``: "reused" (with its result),
    "resumed" or "ran"."""
    from nasp.run_folder import read_json

    if (out / "result.json").exists() or (out / "checkpoint.pt").exists():
        check_same_run(out, cfg)
        if (out / "result.json").exists():
            return "reused", read_json(out / "result.json")
        return "resumed", None
    return "ran", None


# config keys that may differ between a saved run and the same run asked for again
_NOT_COMPARED = {"command", "out", "device", "log_every", "tensorboard", "check_sync",
                 "dist_timeout", "threads"}


def check_same_run(run_dir: Path, cfg: SearchConfig) -> None:
    """A run folder reused or continued must have been made with the options asked for now."""
    import json

    from nasp.run_folder import read_json

    def comparable(config: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in json.loads(json.dumps(config)).items()
                if k not in _NOT_COMPARED}

    from nasp.device import memory_format_name, resolve_device, resolve_memory_format

    wanted_cfg = cfg.record()  # "auto" layouts compare as what they resolve to here
    wanted_cfg["memory_format"] = memory_format_name(resolve_memory_format(
        resolve_device(cfg.device), cfg.memory_format))
    saved, wanted = comparable(read_json(run_dir / "config.json")), comparable(wanted_cfg)
    if wanted.get("compile") == "auto":  # auto accepts what it resolved to for that run
        wanted["compile"] = saved.get("compile", "off")
    diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in diff)
        raise NaspError(f"{run_dir} holds a run made with other options ({shown})",
                        "use another --out, or --overwrite to redo the run")


def train(task: str = "cnn", config: str | os.PathLike | None = None, overwrite: bool = False,
          progress: bool = True, **options: Any) -> dict[str, Any]:
    """Train a genotype's evaluation network from scratch (``task`` "cnn" or "lm"); returns
    the run's result.json."""
    if task not in TRAIN_CONFIGS:
        raise NaspError(f"unknown task {task!r}", "use task='cnn' or task='lm'")
    cfg = resolve(TRAIN_CONFIGS[task], options, config)
    cfg.out = str(cfg.out or cfg.default_out())
    return _train_loop(task)(cfg, overwrite=overwrite, progress=progress)


def resume(run_dir: str | os.PathLike, progress: bool = True, *, command: str | None = None,
           config: str | os.PathLike | None = None, model: nn.Module | None = None,
           train: Iterable[Any] | None = None, valid: Iterable[Any] | None = None,
           loss: Callable[[nn.Module, Any], Any] | None = None,
           metrics: Callable[[nn.Module, Any], Any] | None = None, **options: Any) -> Any:
    """Continue an interrupted search or training run from its last checkpoint. Options that
    cannot change finished epochs (device, log_every, data_root; an LM run's epochs) may be
    given; others are refused by name. ``command`` ("search" or "train") refuses a folder of
    the other kind, naming the command that resumes it. A search of your own model resumes
    with the same ``model``, ``train``, ``valid``, ``loss`` (and ``metrics``) given again: the
    run folder holds their state, not their code."""
    saved = read_run_config(run_dir)
    kind = run_kind(saved)
    name, task = kind
    if command is not None and name != command:
        raise NaspError(f"{run_dir} is a `nasp {name}` run, not a `nasp {command}` run",
                        f"resume it with `{resume_command(kind, run_dir)}`")
    if name == "search":
        own = saved.get("task") == "model"
        probe: dict[str, Any] = {}
        factory = _model_task(model, train, valid, loss, metrics, probe)
        if own and factory is None:
            raise NaspError(f"{run_dir} is a search of a model given from Python",
                            "resume it from Python with the same objects: nasp.resume(run, "
                            "model=..., train=..., valid=..., loss=...)")
        if factory is not None and not own:
            raise NaspError(f"{run_dir} is not a search of a model given from Python",
                            "resume it without model=, train=, valid=, loss=")
        cfg = resolve_resume(SearchConfig, run_dir, options, config_file=config)
        return run_search(cfg, Path(run_dir), resume=True, progress=progress,
                          task_factory=factory)
    if name == "train" and task in TRAIN_CONFIGS:
        cfg = resolve_resume(TRAIN_CONFIGS[task], run_dir, options, config_file=config)
        return _train_loop(task)(cfg, resume=True, progress=progress)
    raise NaspError(f"{run_dir} was written by `nasp {command}`, which cannot be resumed",
                    "resume a search or training run folder")


def _train_loop(task: str):
    if task == "lm":
        from nasp.loops.train_lm import train as loop
    else:
        from nasp.loops.train_cnn import train as loop
    return loop
