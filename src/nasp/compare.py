"""``nasp compare``: every (strategy, seed) search on one budget, every result scored alike.

Each search writes a normal run folder ``OUT/<strategy>-s<seed>/``. Its final discrete
architecture is then trained from scratch with the ``fixed`` strategy on the same search code,
data split and seed, for ``score_epochs`` epochs (default: the search's epochs), in
``OUT/<strategy>-s<seed>/score/``; the last epoch's validation accuracy of that training is added
to the search's result.json as ``final_valid_acc`` (language models: ``final_valid_ppl``), so
every strategy - whether it ends in a supernet (DARTS, ASAP), a discrete net (NASP, PA) or a
short-trained candidate (random search) - is measured by the same yardstick. The table
(``comparison.md``, ``comparison.csv``) is rewritten after every finished run.

An interrupted compare continues where it stopped: finished searches and scores are reused,
unfinished ones are resumed from their checkpoints. A run folder made with other options is an
error rather than silently mixed in (``overwrite`` redoes the runs).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from nasp.config import SearchConfig, resolve
from nasp.errors import NaspError
from nasp.runs import read_json, write_json

# config keys that may differ between a saved run and a compare continuing it
_IGNORED = {"command", "out", "device", "log_every", "checkpoint_every"}
_FINAL_KEYS = ("valid_acc", "valid_loss", "valid_ppl")


def parse_list(value: str | Iterable[Any], kind: type, what: str) -> list[Any]:
    """``"a,b"`` or an iterable -> a list of ``kind``, duplicates rejected."""
    items = [v.strip() for v in value.split(",")] if isinstance(value, str) else list(value)
    items = [v for v in items if v != ""]
    try:
        out = [kind(v) for v in items]
    except (TypeError, ValueError):
        raise NaspError(f"cannot read {what} from {value!r}",
                        f"give a comma-separated list, e.g. --{what} "
                        + ("0,1,2" if kind is int else "nasp,darts")) from None
    if not out:
        raise NaspError(f"no {what} given", f"pass --{what}")
    if len(set(out)) != len(out):
        raise NaspError(f"{what} {out} repeat an entry", "list each one once")
    return out


def run_name(strategy: str, seed: int) -> str:
    return f"{strategy}-s{seed}"


def _per_strategy_options(options: Any, strategies: Sequence[str]) -> dict[str, dict[str, Any]]:
    """``strategy_options`` of a compare is keyed by strategy: {"asap": {"t0": 2}, ...}."""
    if options is None:
        return {}
    hint = ('key them by strategy, e.g. --strategy-options \'{"asap": {"t0": 2.0}, '
            '"random": {"candidates": 4}}\'')
    if not isinstance(options, dict):
        raise NaspError("strategy_options of a compare must be a JSON object", hint)
    for name, value in options.items():
        if name not in strategies:
            raise NaspError(f"strategy_options names {name!r}, which is not in --strategies "
                            f"({', '.join(strategies)})", hint)
        if not isinstance(value, dict):
            raise NaspError(f"strategy_options[{name!r}] must be a JSON object", hint)
    return options


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in json.loads(json.dumps(config)).items() if k not in _IGNORED}


def _check_same(run_dir: Path, cfg: SearchConfig) -> None:
    """A reused run folder must have been made with the options asked for now."""
    saved = _comparable(read_json(run_dir / "config.json"))
    wanted = _comparable(cfg.to_dict())
    diff = sorted(k for k in set(saved) | set(wanted) if saved.get(k) != wanted.get(k))
    if diff:
        shown = ", ".join(f"{k}: {saved.get(k)!r} there, {wanted.get(k)!r} now" for k in diff)
        raise NaspError(f"{run_dir} holds a run made with other options ({shown})",
                        "use another --out, or --overwrite to redo the runs")


def _run(cfg_options: dict[str, Any], config: str | os.PathLike | None, run_dir: Path,
         overwrite: bool, progress: bool) -> tuple[dict[str, Any], str]:
    """Search (or reuse, or resume) one run folder; returns its result.json and what was done."""
    from nasp.api import resume, search

    cfg = resolve(cfg_options, config)
    if not overwrite and (run_dir / "result.json").exists():
        _check_same(run_dir, cfg)
        return read_json(run_dir / "result.json"), "reused"
    if not overwrite and (run_dir / "checkpoint.pt").exists():
        _check_same(run_dir, cfg)
        return resume(run_dir, progress=progress).result, "resumed"
    res = search(config=config, overwrite=True, progress=progress, out=str(run_dir),
                 **cfg_options)
    return res.result, "ran"


def score_run(run_dir: Path, options: dict[str, Any], config: str | os.PathLike | None,
              score_epochs: int, overwrite: bool = False, progress: bool = False
              ) -> dict[str, Any]:
    """Train a search run's genotype from scratch (``fixed``) and record ``final_*`` metrics in
    its result.json; returns that result.json."""
    result = read_json(run_dir / "result.json")
    if (not overwrite and result.get("score_epochs") == score_epochs
            and any(f"final_{k}" in result for k in _FINAL_KEYS)):
        return result
    if not isinstance(result.get("genotype"), dict):
        raise NaspError(f"{run_dir / 'result.json'} has no genotype", "redo the search")
    fixed = {**options, "strategy": "fixed", "epochs": score_epochs,
             "strategy_options": {"genotype": result["genotype"]}}
    score_dir = run_dir / "score"
    if not overwrite and (score_dir / "config.json").exists():
        try:  # a score folder is derived data: one of another genotype or budget is redone
            _check_same(score_dir, resolve(fixed, config))
        except NaspError:
            overwrite = True
    score, _ = _run(fixed, config, score_dir, overwrite, progress)
    for key in _FINAL_KEYS:
        if key in score:
            result[f"final_{key}"] = score[key]
    result["score_epochs"] = score_epochs
    result["score_time_s"] = score.get("search_time_s")
    if result.get("eval_params_m") is None:
        result["eval_params_m"] = score.get("eval_params_m")
    write_json(run_dir / "result.json", result)
    return result


def search_and_score(options: dict[str, Any], config: str | None, run_dir: str,
                     score_epochs: int, overwrite: bool, progress: bool) -> str:
    """One (strategy, seed): search (or reuse/resume), then score; returns what the search did."""
    path = Path(run_dir)
    _, how = _run(options, config, path, overwrite, progress)
    # a fresh search invalidates an old score of that folder
    score_run(path, options, config, score_epochs, overwrite or how == "ran", progress)
    return how


def _in_child(job: dict[str, Any], threads: int | None = None) -> str:
    """``search_and_score`` in a fresh interpreter; a ``NaspError`` there is raised here.
    ``threads`` caps the child's CPU threads unless the user already set OMP_NUM_THREADS."""
    import nasp

    with tempfile.TemporaryDirectory(prefix="nasp-compare-") as tmp:
        job_file, answer = Path(tmp) / "job.json", Path(tmp) / "answer.json"
        job_file.write_text(json.dumps(job, default=str))
        env = dict(os.environ)
        if threads is not None and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(threads)
        src = str(Path(nasp.__file__).resolve().parents[1])  # this very nasp, installed or not
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        code = subprocess.call([sys.executable, "-c", "import sys; from nasp.compare import "
                                "_child_main; _child_main(sys.argv[1], sys.argv[2])",
                                str(job_file), str(answer)], env=env)
        reply = json.loads(answer.read_text()) if answer.exists() else None
    if reply is None or code != 0:
        if code < 0 or code == 130:
            raise KeyboardInterrupt
        raise RuntimeError(f"the run in {job['run_dir']} failed (exit status {code}); its "
                           "traceback is above")
    if "error" in reply:
        raise NaspError(reply["error"], reply.get("hint"))
    return str(reply["how"])


def _child_main(job_file: str, answer_file: str) -> None:
    job = json.loads(Path(job_file).read_text())
    try:
        reply: dict[str, Any] = {"how": search_and_score(**job)}
    except NaspError as e:
        reply = {"error": e.message, "hint": e.hint}
    Path(answer_file).write_text(json.dumps(reply))


def write_table(out: Path, run_dirs: Sequence[Path]) -> list[dict[str, Any]]:
    """``comparison.md`` and ``comparison.csv`` of the finished runs among ``run_dirs``."""
    from nasp.viz.runs import load_run
    from nasp.viz.tables import comparison_rows, to_csv, to_markdown

    runs = [load_run(d) for d in run_dirs if (d / "result.json").exists()]
    rows = comparison_rows(runs)
    (out / "comparison.md").write_text(to_markdown(rows))
    to_csv(rows, out / "comparison.csv")
    return rows


def _check_strategies(names: Sequence[str], per_strategy: dict[str, dict[str, Any]],
                      search_options: dict[str, Any], config: str | os.PathLike | None) -> None:
    """Build every strategy once on the CPU (cheap: no network, no data), so a bad strategy
    option fails before hours of other runs, not in the middle of them."""
    import torch

    from nasp.loops.search import build_strategy

    for name in names:
        cfg = resolve({**search_options, "strategy": name,
                       "strategy_options": dict(per_strategy.get(name, {}))}, config)
        build_strategy(cfg, torch.device("cpu"))


def compare(
    strategies: str | Sequence[str],
    seeds: str | Sequence[int],
    out: str | os.PathLike,
    *,
    score_epochs: int | None = None,
    config: str | os.PathLike | None = None,
    overwrite: bool = False,
    progress: bool = True,
    isolate: bool = True,
    jobs: int = 1,
    log: Callable[[str], None] | None = print,
    **search_options: Any,
) -> list[dict[str, Any]]:
    """Run every (strategy, seed) search into ``out``, score each result, write the table.

    ``search_options`` are ``nasp search`` options (preset, space, data, epochs, ...) shared by
    all runs; ``strategy_options`` among them is keyed by strategy. With ``isolate`` each
    (strategy, seed) runs in a fresh Python process, so its peak memory (the process's peak
    resident set on the CPU) and threads are its own, not left over from earlier runs.

    ``jobs`` > 1 runs that many (strategy, seed) processes at once, each with
    ``cpu_count // jobs`` CPU threads (unless OMP_NUM_THREADS is set): on a many-core CPU this
    is how a 21-run comparison fits in an afternoon. Concurrent runs share the machine, so
    their wall times are those of a shared machine; on one GPU keep ``jobs=1`` for Table-6
    style timings. Returns the table's rows (``nasp.viz.tables.comparison_rows``)."""
    from nasp.strategies import get_strategy

    names = parse_list(strategies, str, "strategies")
    seed_list = parse_list(seeds, int, "seeds")
    for name in names:
        get_strategy(name)  # an unknown name fails before any run starts
    bad = {"strategy", "seed", "out"} & set(search_options)
    if bad:
        raise NaspError(f"compare sets {', '.join(sorted(bad))} per run itself",
                        "use strategies=, seeds= and out= instead")
    per_strategy = _per_strategy_options(search_options.pop("strategy_options", None), names)
    # resolve once up front: bad options fail now, and the scoring budget defaults to the
    # search's epochs (the same for every strategy)
    base = resolve({**search_options, "strategy": names[0]}, config)
    _check_strategies(names, per_strategy, search_options, config)
    epochs = int(score_epochs) if score_epochs is not None else base.epochs
    if epochs < 1:
        raise NaspError(f"invalid score epochs {score_epochs!r}", "use --score-epochs 1 or more")
    if not isinstance(jobs, int) or jobs < 1:
        raise NaspError(f"invalid jobs {jobs!r}", "use --jobs 1 or more")
    if jobs > 1 and not isolate:
        raise NaspError("parallel runs need a process each", "drop --in-process or use --jobs 1")
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "compare.json", {
        "command": "compare", "strategies": names, "seeds": seed_list, "score_epochs": epochs,
        "config": str(config) if config else None, "options": search_options,
        "strategy_options": per_strategy})
    say = log or (lambda _msg: None)
    pairs = [(n, s) for n in names for s in seed_list]
    run_dirs = [out_dir / run_name(n, s) for n, s in pairs]
    jobs = min(jobs, len(pairs))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None

    def one(name: str, seed: int) -> tuple[str, float]:
        options = {**search_options, "strategy": name, "seed": seed,
                   "strategy_options": dict(per_strategy.get(name, {}))}
        job = dict(options=options, config=str(config) if config else None,
                   run_dir=str(out_dir / run_name(name, seed)), score_epochs=epochs,
                   overwrite=overwrite, progress=progress and jobs == 1)
        t0 = time.perf_counter()
        how = _in_child(job, threads) if isolate else search_and_score(**job)
        return how, time.perf_counter() - t0

    rows: list[dict[str, Any]] = []

    def finished(i: int, name: str, seed: int, how: str, seconds: float) -> None:
        nonlocal rows
        run_dir = out_dir / run_name(name, seed)
        result = read_json(run_dir / "result.json")
        metric = "acc" if "final_valid_acc" in result else "ppl"
        final = result.get(f"final_valid_{metric}")
        say(f"[{i}/{len(pairs)}] {run_dir.name}: search {how} "
            f"({float(result.get('search_time_s') or 0):.1f} s searching); scored over {epochs} "
            f"epoch(s): final valid {metric} "
            f"{'n/a' if final is None else format(final, '.4f')} ({seconds:.1f} s)")
        rows = write_table(out_dir, run_dirs)

    if jobs == 1:
        for i, (name, seed) in enumerate(pairs, 1):
            finished(i, name, seed, *one(name, seed))
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(one, n, s): (n, s) for n, s in pairs}
            try:
                for i, future in enumerate(as_completed(futures), 1):
                    finished(i, *futures[future], *future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # running children finish
                raise
    say(f"table: {out_dir / 'comparison.md'}, {out_dir / 'comparison.csv'}")
    return rows
