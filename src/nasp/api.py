"""The Python API: the same jobs as the CLI, in a few lines.

>>> import nasp
>>> res = nasp.search(strategy="nasp", space="nasp-7", preset="quick", out="runs/demo")
>>> print(res.genotype)
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from nasp.config import SearchConfig, resolve
from nasp.loops.search import SearchResult, run_search
from nasp.runs import prepare_run_dir, read_json, write_json


def default_run_name(cfg: SearchConfig) -> str:
    return f"runs/{cfg.strategy}-{cfg.space}-{cfg.data}-s{cfg.seed}"


def search(
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    **options: Any,
) -> SearchResult:
    """Resolve options (preset < config file < keyword options) and run a search.

    ``out=None`` keeps everything in memory only when ``out=False`` is passed explicitly;
    otherwise a run folder named after strategy, space, data and seed is used."""
    write = options.pop("out", None)
    cfg = resolve(options, config)
    if write is False:
        return run_search(cfg, None, progress=progress)
    cfg.out = str(write or default_run_name(cfg))
    run_dir = prepare_run_dir(cfg.out, overwrite=overwrite)
    write_json(run_dir / "config.json", {"command": "search", **cfg.to_dict()})
    return run_search(cfg, run_dir, progress=progress)


def resume(run_dir: str | os.PathLike, progress: bool = True, **kw: Any) -> SearchResult:
    """Continue an interrupted search from its last checkpoint, with its saved config."""
    path = prepare_run_dir(run_dir, resume=True)
    saved = read_json(path / "config.json")
    saved.pop("command", None)
    cfg = SearchConfig(**{**saved, "arch_betas": tuple(saved.get("arch_betas", (0.5, 0.999)))})
    return run_search(cfg, Path(path), resume=True, progress=progress, **kw)
