"""``nasp compare``: every (strategy, seed) search on one budget, every result scored alike.

Each search writes a normal run folder ``OUT/<strategy>-s<seed>/``. Its final discrete
architecture is then trained from scratch with the ``fixed`` strategy on the same search code
and seed, for ``score_epochs`` epochs (default: the search's epochs), in
``OUT/<strategy>-s<seed>/score/``, and scored on data no strategy has seen. Three splits:

* the weight split (``train_portion`` of the training set) trains the network weights during
  the search, and trains the scored network from scratch;
* the architecture split (the rest) trains the architecture parameters, gives the per-epoch
  search metrics, and is where random search picks its candidate;
* the test set, held out: only the scoring reads it (``evaluate_on="test"``).

The score (``final_test_acc``; language models ``final_test_ppl``) is added to the search's
result.json, so every strategy - whether it ends in a supernet (DARTS, ASAP), a discrete net
(NASP, PA) or a short-trained candidate (random search) - is measured by one yardstick. The table
(``comparison.md``, ``comparison.csv``) is rewritten after every finished run.

An interrupted compare continues where it stopped: finished searches and scores are reused,
unfinished ones are resumed from their checkpoints. A run folder made with other options is an
error rather than silently mixed in (``overwrite`` redoes the runs). The compare folder is locked
while a compare runs, each run folder while its run does; run processes die with the compare.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from typing import Any

from nasp.configs import SearchConfig, resolve
from nasp.configs.base import MAX_SEED
from nasp.errors import NaspError
from nasp.run_folder import (
    acquire_lock,
    atomic_write_bytes,
    check_output,
    ensure_dir,
    read_json,
    refuse_if_locked,
    release_lock,
    write_json,
)

SCORE_KEYS = ("test_acc", "test_loss", "test_ppl")


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


def _run(options: dict[str, Any], config: str | os.PathLike | None, run_dir: Path,
         overwrite: bool, progress: bool) -> tuple[dict[str, Any], str]:
    """Search (or reuse, or resume) one run folder; returns its result.json and what was done."""
    from nasp.api import search, search_or_continue

    if overwrite:
        res = search(config=config, overwrite=True, progress=progress, out=str(run_dir),
                     **options)
        return res.result, "ran"
    return search_or_continue(config, progress=progress, out=str(run_dir), **options)


def score_options(run_dir: Path, options: dict[str, Any], score_epochs: int) -> dict[str, Any]:
    """The ``fixed`` search that scores a run's final architecture: trained from scratch on the
    weight split for ``score_epochs``, evaluated on the held-out test set."""
    # a latency budget shaped the search, not the retraining of what it found
    kept = {k: v for k, v in options.items()
            if k not in ("latency_target", "latency_margin", "latency_step")}
    record = ({"arch": str(run_dir / "arch.json")} if (run_dir / "arch.json").exists()
              else {"genotype": str(run_dir / "genotype.json")})  # a user model's, or a cell's
    return {**kept, "strategy": "fixed", "epochs": score_epochs, "evaluate_on": "test",
            "strategy_options": record}


def score_run(run_dir: Path, options: dict[str, Any], config: str | os.PathLike | None,
              score_epochs: int, overwrite: bool = False, progress: bool = False,
              only_finished: bool = False) -> dict[str, Any]:
    """Train a search run's genotype from scratch (``fixed``, weight split) and record its
    held-out test metrics as ``final_*`` in the search's result.json; returns that.
    ``only_finished``: record a score that is already there, start nothing."""
    from nasp.api import check_same_run

    result = read_json(run_dir / "result.json")
    if not overwrite and _scored(result, score_epochs):
        return result
    fixed = score_options(run_dir, options, score_epochs)
    score_dir = run_dir / "score"
    if not overwrite and (score_dir / "config.json").exists():
        try:  # a score folder is derived data: one of another budget is redone
            check_same_run(score_dir, resolve(SearchConfig, fixed, config))
        except NaspError:
            overwrite = True
    if only_finished and not (score_dir / "result.json").exists():
        return result
    score, _ = _run(fixed, config, score_dir, overwrite, progress)
    for key in SCORE_KEYS:
        if f"search_{key}" in score:
            result[f"final_{key}"] = score[f"search_{key}"]
    result["score_epochs"] = score_epochs
    result["score_time_s"] = score.get("search_time_s")
    write_json(run_dir / "result.json", result)
    return result


def search_and_score(options: dict[str, Any], config: str | None, run_dir: str,
                     score_epochs: int, overwrite: bool, progress: bool) -> str:
    """One (strategy, seed): search (or reuse/resume), then score; returns what the search did.
    Holds the run folder's lock throughout, so no other compare touches it meanwhile."""
    path = ensure_dir(run_dir)
    acquire_lock(path)
    try:
        _, how = _run(options, config, path, overwrite, progress)
        # a fresh search invalidates an old score of that folder
        score_run(path, options, config, score_epochs, overwrite or how == "ran", progress)
    finally:
        release_lock(path)
    return how


def _in_child(job: dict[str, Any], threads: int | None = None,
              again: str = "the same nasp compare call") -> str:
    """``search_and_score`` in a fresh interpreter that dies with this one; a ``NaspError``
    there is raised here, a death by signal (the out-of-memory killer) is named as such.
    ``threads`` caps the child's CPU threads unless the user already set OMP_NUM_THREADS."""
    with tempfile.TemporaryDirectory(prefix="nasp-compare-") as tmp:
        job_file, answer = Path(tmp) / "job.json", Path(tmp) / "answer.json"
        job_file.write_text(json.dumps(job, default=str))
        env = dict(os.environ)
        if threads is not None and "OMP_NUM_THREADS" not in env:
            env["OMP_NUM_THREADS"] = str(threads)
        src = str(Path(__file__).resolve().parents[1])  # this very nasp, installed or not
        env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
        code = subprocess.call([sys.executable, "-c", "import sys; from nasp.compare import "
                                "_child_main; _child_main(sys.argv[1], sys.argv[2], "
                                "int(sys.argv[3]))", str(job_file), str(answer),
                                str(os.getpid())], env=env)
        reply = json.loads(answer.read_text()) if answer.exists() else None
    if code < 0 and -code != signal.SIGINT:
        name = signal.Signals(-code).name
        raise NaspError(f"the run in {job['run_dir']} was killed by {name}"
                        + (" (likely the out-of-memory killer)" if -code == signal.SIGKILL
                           else ""),
                        f"free memory (or lower --jobs), then continue with `{again}`; "
                        "finished runs are reused")
    if code in (130, -signal.SIGINT):
        raise KeyboardInterrupt
    if reply is None or code != 0:
        raise RuntimeError(f"the run in {job['run_dir']} failed (exit status {code}); its "
                           "traceback is above")
    if "error" in reply:
        raise NaspError(reply["error"], reply.get("hint"))
    return str(reply["how"])


def _die_with_parent(parent: int) -> None:
    """Ask the kernel to kill this process when its parent dies (Linux), and check the parent
    is still there (it may have died before the request)."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass  # not Linux: a killed compare may leave its runs going; their locks stay safe
    if os.getppid() != parent:
        os._exit(1)


def _child_main(job_file: str, answer_file: str, parent: int) -> None:
    from nasp.run_folder import HOLDER

    _die_with_parent(parent)
    job = json.loads(Path(job_file).read_text())
    HOLDER.append(f"nasp compare worker for {job['run_dir']}")  # its locks name it so
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
    atomic_write_bytes(out / "comparison.md", to_markdown(rows).encode())
    to_csv(rows, out / "comparison.csv")
    return rows


def _check_strategies(names: Sequence[str], per_strategy: dict[str, dict[str, Any]],
                      search_options: dict[str, Any], config: str | os.PathLike | None) -> None:
    """Build every strategy once on the CPU (cheap: no network, no data), so a bad strategy
    option fails before hours of other runs, not in the middle of them."""
    from nasp.strategies import build_strategy

    space = None
    for name in names:
        cfg = resolve(SearchConfig, {**search_options, "strategy": name,
                                     "strategy_options": dict(per_strategy.get(name, {}))},
                      config)
        if space is None and cfg.own_model:  # a user model's space: its choices
            from nasp.configs.train_cnn import dataset_shape
            from nasp.spaces.model import build_model
            from nasp.supernet.choices import attach

            c, _, _, classes = dataset_shape(cfg.data, cfg.data_root)
            space = attach(build_model(cfg.space, c, classes))
        build_strategy(cfg, "cpu", space)


class Progress:
    """A first line (runs in all, how many are reused, how many run at once), then one line per
    finished run: runs done of total, elapsed time and an estimate of the time left.

    The estimate is the mean time of the runs that actually ran (a reused run takes a moment
    and would make the rest look quick) times the runs still to run, divided by how many run at
    once (``jobs``): with N processes going, N runs finish in about one run's time."""

    def __init__(self, total: int, reused: int, jobs: int, say: Callable[[str], None]) -> None:
        self.total, self.say, self.done, self.t0 = total, say, 0, time.perf_counter()
        self.to_run, self.jobs, self.ran = total - reused, jobs, []
        at_once = f", {min(jobs, self.to_run)} at a time" if self.to_run > 1 else ""
        say(f"compare: {total} run{'s' * (total != 1)}, {reused} finished earlier and reused, "
            f"{self.to_run} to run{at_once}")

    def __call__(self, line: str, seconds: float, reused: bool) -> None:
        """Report one finished run that took ``seconds`` (``reused``: finished earlier)."""
        self.done += 1
        if not reused:
            self.ran.append(seconds)
        elapsed = time.perf_counter() - self.t0
        left_runs = max(self.to_run - len(self.ran), 0)
        if left_runs == 0:
            left = "nothing left"
        elif not self.ran:
            left = "time left not known yet"
        else:
            mean = sum(self.ran) / len(self.ran)
            left = f"about {_clock(mean * left_runs / min(self.jobs, left_runs))} left"
        self.say(f"[{self.done}/{self.total} runs, {_clock(elapsed)} elapsed, {left}] {line}")


def _scored(result: Any, score_epochs: int) -> bool:
    """Whether a search's result.json holds its score on this budget: the run is then reused
    whole, search and scoring."""
    return (isinstance(result, dict) and result.get("score_epochs") == score_epochs
            and any(f"final_{k}" in result for k in SCORE_KEYS))


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    h, m = divmod(m, 60)
    return f"{h}:{m:02d}:{s:02d}"


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
    command: str | None = None,
    plan: str | os.PathLike | None = None,
    launch: str = "nasp",
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
    style timings. ``command`` is the command line that started the compare, named in errors
    as the way to continue it. Returns the table's rows (``nasp.viz.tables.comparison_rows``).

    ``plan`` (a file path): run nothing here. Without the file, write it: one self-contained
    command line per (strategy, seed) - its search, then its scoring, each started with
    ``launch`` (e.g. ``torchrun --nproc-per-node 8 -m nasp``) and safe to re-run (finished
    work is kept, interrupted work resumed) - for any scheduler (a SLURM job array, GNU
    parallel). With the file, tabulate what has finished and say what has not."""
    from nasp.distributed import launched_together
    from nasp.strategies import get_strategy

    if launched_together():  # every rank would run the whole comparison into one folder
        raise NaspError("nasp compare starts the processes of its runs itself; it is not run "
                        "under torchrun or inside a process group",
                        "run it alone; for searches on several GPUs or machines add --plan FILE "
                        "--launch 'torchrun --nproc-per-node N -m nasp' and run FILE's lines "
                        "(bash FILE, or one scheduler job per line)")
    names = parse_list(strategies, str, "strategies")
    seed_list = parse_list(seeds, int, "seeds")
    outside = [s for s in seed_list if not 0 <= s <= MAX_SEED]
    if outside:
        raise NaspError(f"seeds {outside} are outside the seed range",
                        f"use seeds between 0 and {MAX_SEED}")
    out_dir = check_output(out, "--out", folder=True)
    refuse_other_runs(out_dir)
    for name in names:
        get_strategy(name)  # an unknown name fails before any run starts
    bad = {"strategy", "seed", "out"} & set(search_options)
    if bad:
        raise NaspError(f"compare sets {', '.join(sorted(bad))} per run itself",
                        "use strategies=, seeds= and out= instead")
    per_strategy = _per_strategy_options(search_options.pop("strategy_options", None), names)
    # resolve once up front: bad options fail now, and the scoring budget defaults to the
    # search's epochs (the same for every strategy)
    base = resolve(SearchConfig, {**search_options, "strategy": names[0]}, config)
    _check_strategies(names, per_strategy, search_options, config)
    from nasp.device import resolve_device

    resolve_device(base.device)  # here, not in the first run's process after the table began
    epochs = score_epochs if score_epochs is not None else base.epochs
    if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
        raise NaspError(f"invalid score epochs {score_epochs!r}", "use --score-epochs 1 or more")
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise NaspError(f"invalid jobs {jobs!r}", "use --jobs 1 or more")
    if jobs > 1 and not isolate:
        raise NaspError("parallel runs need a process each", "drop --in-process or use --jobs 1")
    if plan is not None:
        plan_path = check_output(plan, "--plan")
        try:
            prefix = shlex.split(launch)
        except ValueError as e:
            raise NaspError(f"cannot split --launch {launch!r} into words ({e})",
                            "quote it as a shell would, e.g. --launch 'torchrun "
                            "--nproc-per-node 4 -m nasp'") from None
        if not prefix:
            raise NaspError("--launch is empty", "give the command that starts nasp, e.g. "
                            "--launch nasp or --launch 'torchrun --nproc-per-node 4 -m nasp'")
        out_dir = ensure_dir(out_dir).resolve()  # absolute: plan lines run from anywhere
        return _plan(plan_path, names, seed_list, out_dir, per_strategy, search_options,
                     config, epochs, launch, log)
    if out_dir.is_dir():  # a compare refused here writes nothing, not even its .lock
        refuse_if_locked(out_dir)
        if not overwrite:
            _check_same_runs(names, seed_list, out_dir, per_strategy, search_options, config)
    out_dir = ensure_dir(out_dir).resolve()
    acquire_lock(out_dir)
    try:
        return _compare(names, seed_list, out_dir, per_strategy, search_options, config, epochs,
                        overwrite, progress, isolate, jobs, log,
                        command or "the same nasp compare call")
    finally:
        release_lock(out_dir)


def refuse_other_runs(out: Path) -> None:
    """A compare's folder holds its runs and its table, never a search or training run of its
    own: the comparison would be written into that run's folder."""
    from nasp.configs import read_run_config, run_kind

    if not (out / "config.json").is_file():
        return
    command, _ = run_kind(read_run_config(out))
    raise NaspError(f"{out} holds a `nasp {command}` run, not a comparison",
                    "give --out a new folder, or the folder of an earlier nasp compare")


def _check_same_runs(names: list[str], seed_list: list[int], out_dir: Path,
                     per_strategy: dict[str, dict[str, Any]], search_options: dict[str, Any],
                     config: str | os.PathLike | None) -> None:
    """Every run folder already in ``out_dir`` was made with the options asked for now: checked
    before anything is written, so a compare refused for other options leaves the folder (its
    compare.json, its table) as it was."""
    from nasp.api import check_same_run

    for name in names:
        for seed in seed_list:
            run_dir = out_dir / run_name(name, seed)
            # what search_or_continue would reuse or resume (a run that died before its first
            # epoch is started again, whatever its options)
            if (run_dir / "result.json").exists() or (run_dir / "checkpoint.pt").exists():
                options = {**search_options, "strategy": name, "seed": seed,
                           "strategy_options": dict(per_strategy.get(name, {})),
                           "out": str(run_dir)}
                check_same_run(run_dir, resolve(SearchConfig, options, config))


def _flags(options: dict[str, Any], config: str | os.PathLike | None) -> list[str]:
    """``nasp search`` command-line options that resolve to ``options``."""
    out = ["--config", str(Path(config).resolve())] if config else []
    for key, value in options.items():
        flag = "--" + key.replace("_", "-")
        if value is None or value == {}:
            continue
        if isinstance(value, bool):
            out.append(flag if value else "--no-" + key.replace("_", "-"))
        elif isinstance(value, dict):
            out += [flag, json.dumps(value, separators=(",", ":"))]
        elif isinstance(value, list | tuple):
            out += [flag, ",".join(map(str, value))]
        else:
            out += [flag, str(value)]
    return out


def plan_lines(names: list[str], seeds: list[int], out_dir: Path,
               per_strategy: dict[str, dict[str, Any]], search_options: dict[str, Any],
               config: str | os.PathLike | None, score_epochs: int, launch: str) -> list[str]:
    """One shell line per (strategy, seed): its search, then its scoring; both ``--continue``,
    so a line re-run after a pre-emption picks up where it stopped."""
    prefix = shlex.split(launch)
    lines = []
    for name in names:
        for seed in seeds:
            run_dir = out_dir / run_name(name, seed)
            opts = {**search_options, "strategy": name, "seed": seed,
                    "strategy_options": dict(per_strategy.get(name, {}))}
            search = [*prefix, "search", "--continue", "--quiet",
                      *_flags({**opts, "out": str(run_dir)}, config)]
            score = [*prefix, "search", "--continue", "--quiet",
                     *_flags({**score_options(run_dir, opts, score_epochs),
                              "out": str(run_dir / "score")}, config)]
            lines.append(f"{shlex.join(search)} && {shlex.join(score)}")
    return lines


def _plan(path: Path, names: list[str], seed_list: list[int], out_dir: Path,
          per_strategy: dict[str, dict[str, Any]], search_options: dict[str, Any],
          config: str | os.PathLike | None, epochs: int, launch: str,
          log: Callable[[str], None] | None) -> list[dict[str, Any]]:
    say = log or (lambda _msg: None)
    lines = plan_lines(names, seed_list, out_dir, per_strategy, search_options, config, epochs,
                       launch)
    pairs = [(n, s) for n in names for s in seed_list]
    if not path.exists():
        ensure_dir(path.parent)
        atomic_write_bytes(path, "".join(line + "\n" for line in lines).encode())
        say(f"plan: {len(lines)} command lines in {path} (line k: {run_name(*pairs[0])} ...); "
            f"run them with any scheduler, then run this command again to tabulate")
        return []
    written = path.read_text().splitlines()
    if written != lines:
        raise NaspError(f"{path} holds a plan made with other options or another --launch",
                        "give the options it was written with, or a new --plan file")
    run_dirs = [out_dir / run_name(n, s) for n, s in pairs]
    unfinished = []
    for i, ((name, seed), run_dir) in enumerate(zip(pairs, run_dirs, strict=True), 1):
        options = {**search_options, "strategy": name, "seed": seed,
                   "strategy_options": dict(per_strategy.get(name, {}))}
        if not (run_dir / "result.json").exists():
            unfinished.append(f"{run_dir.name} (search; line {i})")
            continue
        result = score_run(run_dir, options, config, epochs, only_finished=True)
        if not any(f"final_{k}" in result for k in SCORE_KEYS):
            unfinished.append(f"{run_dir.name} (scoring; line {i})")
    rows = write_table(out_dir, run_dirs) if len(unfinished) < len(pairs) else []
    say(f"{len(pairs) - len(unfinished)} of {len(pairs)} runs finished"
        + (f"; not yet: {', '.join(unfinished)} of {path}" if unfinished else "")
        + (f"; table: {out_dir / 'comparison.md'}" if rows else ""))
    return rows


def _compare(names: list[str], seed_list: list[int], out_dir: Path,
             per_strategy: dict[str, dict[str, Any]], search_options: dict[str, Any],
             config: str | os.PathLike | None, epochs: int, overwrite: bool, progress: bool,
             isolate: bool, jobs: int, log: Callable[[str], None] | None,
             command: str) -> list[dict[str, Any]]:
    write_json(out_dir / "compare.json", {
        "command": "compare", "strategies": names, "seeds": seed_list, "score_epochs": epochs,
        "config": str(config) if config else None, "options": search_options,
        "strategy_options": per_strategy})
    pairs = [(n, s) for n in names for s in seed_list]
    run_dirs = [out_dir / run_name(n, s) for n, s in pairs]
    jobs = min(jobs, len(pairs))
    threads = max(1, (os.cpu_count() or 1) // jobs) if jobs > 1 else None
    reused = set() if overwrite else {d for d in run_dirs if (d / "result.json").is_file()
                                      and _scored(read_json(d / "result.json"), epochs)}
    report = Progress(len(pairs), len(reused), jobs, log or (lambda _msg: None))

    def one(name: str, seed: int) -> tuple[str, float]:
        options = {**search_options, "strategy": name, "seed": seed,
                   "strategy_options": dict(per_strategy.get(name, {}))}
        job = dict(options=options, config=str(config) if config else None,
                   run_dir=str(out_dir / run_name(name, seed)), score_epochs=epochs,
                   overwrite=overwrite, progress=progress and jobs == 1)
        t0 = time.perf_counter()
        how = _in_child(job, threads, command) if isolate else search_and_score(**job)
        return how, time.perf_counter() - t0

    rows: list[dict[str, Any]] = []

    def finished(name: str, seed: int, how: str, seconds: float) -> None:
        nonlocal rows
        run_dir = out_dir / run_name(name, seed)
        result = read_json(run_dir / "result.json")
        metric = "acc" if "final_test_acc" in result else "ppl"
        final = result.get(f"final_test_{metric}")
        report(f"{run_dir.name}: search {how} "
               f"({float(result.get('search_time_s') or 0):.1f} s searching); retrained "
               f"{epochs} epoch(s): held-out test {metric} "
               f"{'n/a' if final is None else format(final, '.4f')} ({seconds:.1f} s)",
               seconds, run_dir in reused)
        rows = write_table(out_dir, run_dirs)

    if jobs == 1:
        for name, seed in pairs:
            finished(name, seed, *one(name, seed))
    else:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = {pool.submit(one, n, s): (n, s) for n, s in pairs}
            try:
                for future in as_completed(futures):
                    finished(*futures[future], *future.result())
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)  # running children finish
                raise
    if log:
        log(f"table: {out_dir / 'comparison.md'}, {out_dir / 'comparison.csv'}")
    return rows
