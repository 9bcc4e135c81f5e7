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
from pathlib import Path
from typing import Any

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
           progress: bool = True, **options: Any) -> SearchResult:
    """Resolve options and run a search. ``out`` names the run folder (default
    runs/<strategy>-<space>-<data>-s<seed>); ``out=False`` keeps everything in memory."""
    write = options.pop("out", None)
    cfg = resolve(SearchConfig, options, config)
    if write is False:
        return run_search(cfg, None, progress=progress)
    cfg.out = str(write or cfg.default_out())
    return run_search(cfg, cfg.out, overwrite=overwrite, progress=progress)


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
        if how == "resumed":
            return resume(out, progress=progress, command="search").result, how
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
                 "dist_timeout"}


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
           config: str | os.PathLike | None = None, **options: Any) -> Any:
    """Continue an interrupted search or training run from its last checkpoint. Options that
    cannot change finished epochs (device, log_every, data_root; an LM run's epochs) may be
    given; others are refused by name. ``command`` ("search" or "train") refuses a folder of
    the other kind, naming the command that resumes it."""
    kind = run_kind(read_run_config(run_dir))
    name, task = kind
    if command is not None and name != command:
        raise NaspError(f"{run_dir} is a `nasp {name}` run, not a `nasp {command}` run",
                        f"resume it with `{resume_command(kind, run_dir)}`")
    if name == "search":
        cfg = resolve_resume(SearchConfig, run_dir, options, config_file=config)
        return run_search(cfg, Path(run_dir), resume=True, progress=progress)
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
