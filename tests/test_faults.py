"""Faults a careless user and an unlucky cluster cause: second writers, killed processes, bad
input, full disks, torn files. Each bad input must give exit status 2, one ``error:`` line and
an unchanged file tree."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

import nasp
import nasp.run_folder as run_folder
from nasp.cli import main
from nasp.errors import NaspError
from nasp.genotype import GENOTYPES

SRC = str(Path(nasp.__file__).resolve().parents[1])
TINY = ["--max-train-samples", "128", "--channels", "4", "--layers", "3", "--batch-size", "16",
        "--max-steps-per-epoch", "2", "--epochs", "2", "--quiet", "--device", "cpu"]
TRAIN = ["--max-train-samples", "128", "--channels", "4", "--layers", "3", "--batch-size", "16",
         "--max-steps-per-epoch", "2", "--epochs", "1", "--quiet", "--device", "cpu"]
SLOW = ["--max-train-samples", "512", "--channels", "4", "--layers", "3", "--batch-size", "16",
        "--epochs", "50", "--quiet", "--device", "cpu"]


def spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": SRC, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "nasp", *map(str, args)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for(condition, timeout: float = 120.0) -> None:
    end = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > end:
            raise AssertionError("timed out waiting")
        time.sleep(0.1)


def locked(folder: Path) -> bool:
    """True while another process holds the run folder's lock."""
    if not (folder / ".lock").exists():
        return False
    try:
        run_folder.acquire_lock(folder)
    except NaspError:
        return True
    run_folder.release_lock(folder)
    return False


def holder(folder: Path) -> int:
    return int((folder / ".lock").read_text().split()[0])


def tree(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


# --- one writer ----------------------------------------------------------------------------------

def test_a_second_writer_is_refused_and_a_killed_writer_leaves_no_lock(tmp_path, capsys):
    run = tmp_path / "run"
    proc = spawn("search", "--out", run, *SLOW)
    try:
        wait_for(lambda: locked(run))
        for argv in (["search", "--resume", str(run)],
                     ["search", "--out", str(run), "--overwrite", *TINY]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert f"in use by process {proc.pid}" in err and err.count("\n") == 1
    finally:
        proc.kill()
        proc.wait()
    assert not locked(run)  # the kernel dropped the lock with the process


def test_a_killed_compare_takes_its_run_processes_with_it(tmp_path):
    out = tmp_path / "cmp"
    proc = spawn("compare", "--strategies", "nasp", "--seeds", "0", "--out", out, *SLOW)
    run = out / "nasp-s0"
    try:
        wait_for(lambda: locked(run))
        child = holder(run)
        assert child != proc.pid
    finally:
        proc.kill()  # kill -9 of the compare: no chance to clean up
        proc.wait()
    wait_for(lambda: not locked(run), timeout=20)  # the run process died with it
    assert not locked(out)


def test_a_run_killed_by_a_signal_is_named_with_the_command_that_continues(tmp_path, capsys):
    out = tmp_path / "cmp"
    run = out / "pa-s0"

    def kill_the_run():
        wait_for(lambda: locked(run))
        os.kill(holder(run), signal.SIGKILL)  # what the out-of-memory killer does

    threading.Thread(target=kill_the_run, daemon=True).start()
    assert main(["compare", "--strategies", "pa", "--seeds", "0", "--out", str(out),
                 *SLOW]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert "pa-s0 was killed by SIGKILL" in err and "out-of-memory" in err
    assert "continue with `nasp compare" in err and "--resume" not in err


# --- bad input: exit 2, one error line, nothing written ------------------------------------------

@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> Path:
    """A finished tiny search and a finished tiny training run."""
    root = tmp_path_factory.mktemp("runs")
    assert main(["search", "--out", str(root / "search"), *TINY]) == 0
    assert main(["train", "--genotype", "DARTS_V1", "--out", str(root / "train"), *TRAIN]) == 0
    return root


def _config(root: Path, **values) -> str:
    path = root / f"cfg-{len(list(root.glob('cfg-*')))}.json"
    path.write_text(json.dumps(values))
    return str(path)


def _genotype(root: Path, edit) -> str:
    data = GENOTYPES["cnn"]["DARTS_V2"].to_dict()
    edit(data)
    path = root / f"geno-{len(list(root.glob('geno-*')))}.json"
    path.write_text(json.dumps(data))
    return str(path)


def _without(root: Path, name: str, *files: str) -> str:
    """A copy of a run folder lacking ``files`` (e.g. a run that died before its first
    checkpoint, copied without its .lock)."""
    copy = root / f"{name}-without-{len(list(root.glob(name + '-without-*')))}"
    shutil.copytree(root / name, copy)
    for f in files:
        (copy / f).unlink()
    return str(copy)


def _under_a_file(root: Path) -> str:
    """A path whose parent is a regular file (the finished search's config.json)."""
    return str(root / "search" / "config.json" / "x")


def _with_config(root: Path, name: str, **values) -> str:
    """A copy of a run folder whose config.json has other values."""
    copy = root / f"{name}-edited-{len(list(root.glob(name + '-edited-*')))}"
    shutil.copytree(root / name, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, **values}))
    return str(copy)


# (argv builder, what the one error line must say)
BAD = {
    "config epochs 'two'": (lambda r: ["search", "--config", _config(r, epochs="two")],
                            "invalid epochs: 'two' is not a whole number"),
    "config arch_betas 0.5": (lambda r: ["search", "--config", _config(r, arch_betas=0.5)],
                              "invalid arch_betas: 0.5"),
    "config batch_size 32.5": (lambda r: ["search", "--config", _config(r, batch_size=32.5)],
                               "invalid batch_size: 32.5"),
    "config lr '0.1'": (lambda r: ["search", "--config", _config(r, lr="0.1")],
                        "invalid lr: '0.1' is not a number"),
    "config unknown key": (lambda r: ["search", "--config", _config(r, layerz=3)],
                           "unknown option 'layerz'"),
    "train config lr '0.1'": (lambda r: ["train", "--config", _config(r, lr="0.1")],
                              "invalid lr: '0.1'"),
    "--arch-betas 0.5": (lambda r: ["search", "--arch-betas", "0.5"], "invalid arch_betas"),
    "--log-every 0": (lambda r: ["search", "--log-every", "0"], "use --log-every 1 or more"),
    "train --log-every 0": (lambda r: ["train", "--log-every", "0"], "--log-every 1 or more"),
    "compare --log-every 0": (lambda r: ["compare", "--out", str(r / "c"), "--log-every", "0"],
                              "--log-every 1 or more"),
    "--max-steps-per-epoch 0": (lambda r: ["search", "--max-steps-per-epoch", "0"],
                                "invalid max_steps_per_epoch: 0"),
    "--max-steps-per-epoch -1": (lambda r: ["search", "--max-steps-per-epoch", "-1"],
                                 "invalid max_steps_per_epoch: -1"),
    "--max-train-samples 0": (lambda r: ["search", "--max-train-samples", "0"],
                              "invalid max_train_samples: 0"),
    "train --max-train-samples 0": (lambda r: ["train", "--max-train-samples", "0"],
                                    "invalid max_train_samples: 0"),
    "--lr inf": (lambda r: ["search", "--lr", "inf"], "must be finite"),
    "compare --lr inf": (lambda r: ["compare", "--out", str(r / "c"), "--lr", "inf"],
                         "must be finite"),
    "--batch-size 32.5": (lambda r: ["search", "--batch-size", "32.5"], "invalid int value"),
    "genotype input 1.7": (lambda r: ["train", "--genotype", _genotype(
        r, lambda d: d["normal"][0].__setitem__(1, 1.7))], "whole-number inputs"),
    "genotype concat repeats": (lambda r: ["train", "--genotype", _genotype(
        r, lambda d: d.__setitem__("normal_concat", [2, 2, 3, 4]))], "names a node twice"),
    "darts2 with darts-order": (lambda r: ["search", "--strategy", "darts2", "--darts-order",
                                           "1"], "--strategy darts2"),
    "search resumes a train run": (lambda r: ["search", "--resume", str(r / "train")],
                                   "resume it with `nasp train --resume"),
    "train resumes a search run": (lambda r: ["train", "--resume", str(r / "search")],
                                   "resume it with `nasp search --resume"),
    "resume with another lr": (lambda r: ["search", "--resume", str(r / "search"), "--lr",
                                          "0.1"], "--lr cannot change when resuming"),
    "resume with a typo": (lambda r: ["search", "--resume", str(r / "typo")],
                           "does not exist"),
    "resume: config.json with a bad type": (
        lambda r: ["search", "--resume", _with_config(r, "search", epochs="two")],
        "invalid epochs: 'two'"),
    "resume: config.json with an unknown key": (
        lambda r: ["search", "--resume", _with_config(r, "search", colour=1)],
        "unknown option 'colour'"),
    "train resume: bad type": (
        lambda r: ["train", "--resume", _with_config(r, "train", batch_size=9.5)],
        "invalid batch_size: 9.5"),
    "compare --out under a file": (lambda r: ["compare", "--out", _under_a_file(r),
                                              "--strategies", "pa", "--seeds", "0", *TINY],
                                   "a file stands where a folder is needed"),
    "search --out under a file": (lambda r: ["search", "--out", _under_a_file(r), *TINY],
                                  "a file stands where a folder is needed"),
    # an output path under a regular file, or under a place nobody can write
    "plot -o under a file": (lambda r: ["plot", str(r / "search"), "-o",
                                        str(r / "search" / "config.json" / "x")],
                             "search/config.json/x: a file stands where a folder is needed"),
    "report -o under a file": (lambda r: ["report", str(r / "search"), "-o",
                                          str(r / "search" / "config.json" / "x" / "r.html")],
                               "search/config.json/x: a file stands where a folder is needed"),
    "draw -o under a file": (lambda r: ["draw", str(r / "search"), "-o",
                                        str(r / "search" / "config.json" / "x" / "d.png")],
                             "search/config.json/x: a file stands where a folder is needed"),
    "plot -o /proc/x": (lambda r: ["plot", str(r / "search"), "-o", "/proc/x"], "/proc/x"),
    "report -o /proc/x/r.html": (lambda r: ["report", str(r / "search"), "-o",
                                            "/proc/x/r.html"], "/proc/x"),
    "draw -o /proc/x/d.png": (lambda r: ["draw", str(r / "search"), "-o", "/proc/x/d.png"],
                              "/proc/x"),
    # every value of a config file is type-checked, also one the command line overrides
    "config epochs 'two' overridden": (
        lambda r: ["search", "--config", _config(r, epochs="two"), "--epochs", "1"],
        "invalid epochs: 'two' is not a whole number"),
    "train config lr '0.1' overridden": (
        lambda r: ["train", "--config", _config(r, lr="0.1"), "--lr", "0.1"],
        "invalid lr: '0.1'"),
    "resume: config.json arch_betas 0.5": (
        lambda r: ["search", "--resume", _with_config(r, "search", arch_betas=0.5)],
        "invalid arch_betas: 0.5"),
    "resume: config.json lr '0.1'": (
        lambda r: ["search", "--resume", _with_config(r, "search", lr="0.1")],
        "invalid lr: '0.1' is not a number"),
    "resume: bad type overridden by a safe option": (
        lambda r: ["search", "--resume", _with_config(r, "search", log_every="x"),
                   "--log-every", "5"], "invalid log_every: 'x'"),
    "resume without a checkpoint": (
        lambda r: ["search", "--resume", _without(r, "search", "checkpoint.pt", ".lock")],
        "no checkpoint yet"),
    "train --no-progress": (lambda r: ["train", "--no-progress"], "use --quiet"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_bad_input_is_one_error_line_and_changes_nothing(runs, capsys, case, tmp_path,
                                                         monkeypatch):
    build, needle = BAD[case]
    argv = build(runs)  # the test's own files are written here, before the snapshot
    before = tree(runs)
    monkeypatch.chdir(tmp_path)  # where a default runs/ or plots/ folder would go
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert needle in err, err
    assert tree(runs) == before
    assert list(tmp_path.iterdir()) == []  # not even an empty folder


def test_resume_applies_the_options_that_are_safe_to_change(runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs / "search", copy)
    (copy / "result.json").unlink()
    res = nasp.resume(copy, progress=False, log_every=1)
    assert json.loads((copy / "config.json").read_text())["log_every"] == 1
    assert res.genotype.to_dict() == json.loads((runs / "search" / "genotype.json").read_text())


def test_resuming_a_folder_without_a_checkpoint_says_to_start_again(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"command": "search"}))
    before = tree(run)
    assert main(["search", "--resume", str(run)]) == 2
    err = capsys.readouterr().err
    assert "no checkpoint yet" in err and "--overwrite" in err
    assert tree(run) == before  # no .lock left behind


# --- disk full, torn files, leftovers, permissions ---------------------------------------------

def test_a_full_disk_is_one_error_and_the_last_checkpoint_stays(tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    real_fdopen = os.fdopen
    state = {"checkpoints": 0}

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def write(self, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        def __getattr__(self, name):
            return getattr(self.f, name)

    def fdopen(fd, mode="r", *a, **kw):
        f = real_fdopen(fd, mode, *a, **kw)
        name = os.readlink(f"/proc/self/fd/{fd}") if os.path.exists("/proc/self/fd") else ""
        if ".checkpoint.pt." in name:
            state["checkpoints"] += 1
            if state["checkpoints"] == 2:  # the second epoch's checkpoint hits a full disk
                return Full(f)
        return f

    monkeypatch.setattr(run_folder.os, "fdopen", fdopen)
    assert main(["search", "--out", str(run), *TINY]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no space left on the device" in err
    assert str(run) in err and "last good checkpoint" in err
    ckpt = torch.load(run / "checkpoint.pt", weights_only=True)
    assert ckpt["epoch"] == 1  # the first epoch's checkpoint is intact
    lines = (run / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [0]  # the logs are not ahead of it
    assert not list(run.glob(".*.tmp"))
    monkeypatch.undo()
    assert main(["search", "--resume", str(run), "--quiet"]) == 0
    straight = tmp_path / "straight"
    assert main(["search", "--out", str(straight), *TINY]) == 0
    assert (run / "genotype.json").read_text() == (straight / "genotype.json").read_text()


def test_torn_lines_and_leftover_temporary_files_do_not_stop_a_resume(tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(["search", "--out", str(straight), *TINY]) == 0

    class Kill(Exception):
        pass

    def kill(epoch, record):
        raise Kill

    from nasp.configs import SearchConfig, resolve
    from nasp.loops.search import run_search

    cfg = resolve(SearchConfig, dict(max_train_samples=128, channels=4, layers=3, batch_size=16,
                                     max_steps_per_epoch=2, epochs=2, device="cpu",
                                     out=str(cut)))
    with pytest.raises(Kill):
        run_search(cfg, cut, progress=False, on_epoch_end=kill)
    # power loss: half a line in each log, and an interrupted atomic write
    for name in ("metrics.jsonl", "arch.jsonl"):
        with (cut / name).open("a") as f:
            f.write('{"epoch": 1, "train_lo')
    (cut / ".checkpoint.pt.x1y2.tmp").write_bytes(b"partial")
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0
    assert not list(cut.glob(".*.tmp"))
    for name in ("metrics.jsonl", "arch.jsonl", "genotype.json"):
        a = [json.loads(x) for x in (straight / name).read_text().splitlines()] \
            if name.endswith("l") else json.loads((straight / name).read_text())
        b = [json.loads(x) for x in (cut / name).read_text().splitlines()] \
            if name.endswith("l") else json.loads((cut / name).read_text())
        if name == "metrics.jsonl":
            keep = ("epoch", "train_loss", "valid_acc", "lr")
            a, b = [{k: r[k] for k in keep} for r in a], [{k: r[k] for k in keep} for r in b]
        assert a == b, name
    modes = {p.name: p.stat().st_mode & 0o777 for p in cut.iterdir() if p.is_file()}
    assert len(set(modes.values())) == 1, modes  # every file of the folder alike
