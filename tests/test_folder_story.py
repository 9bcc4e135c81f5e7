"""A folder keeps one kind of run and one story: a compare is not written into a search run, a
refused command leaves the folder as it was (its .lock too), a folder another process writes is
named by that process, and an interrupted command names the folder that continues it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

import nasp.run_folder as run_folder
from nasp.cli import main
from test_bad_input import tree
from test_faults import SLOW, TINY, locked, spawn, wait_for


@pytest.fixture(scope="module")
def search_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("made") / "search"
    assert main(["search", "--out", str(run), *TINY]) == 0
    return run


def test_a_compare_is_not_written_into_a_search_run(search_run, tmp_path, capsys):
    run = tmp_path / "search"
    shutil.copytree(search_run, run)
    before = tree(tmp_path)
    assert main(["compare", "--strategies", "nasp", "--seeds", "0", "--out", str(run),
                 *TINY]) == 2
    err = capsys.readouterr().err
    assert f"{run} holds a `nasp search` run, not a comparison" in err
    assert tree(tmp_path) == before


def test_a_compare_refused_for_other_options_writes_nothing(search_run, tmp_path, capsys):
    """The run folder in the compare's folder was made with --epochs 2; asking for 1 is refused
    before compare.json (or the .lock) is touched."""
    out = tmp_path / "cmp"
    shutil.copytree(search_run, out / "nasp-s0")
    (out / "compare.json").write_text(json.dumps({"command": "compare", "seeds": [0]}))
    (out / ".lock").write_text("4242 (nasp compare --out cmp)")
    before = tree(tmp_path)
    tiny = [a if a != "2" or TINY[i - 1] != "--epochs" else "1" for i, a in enumerate(TINY)]
    assert main(["compare", "--strategies", "nasp", "--seeds", "0", "--out", str(out),
                 *tiny]) == 2
    err = capsys.readouterr().err
    assert "holds a run made with other options (epochs: 2 there, 1 now)" in err
    assert tree(tmp_path) == before


@pytest.mark.parametrize("damage", [b"", b"PK\x03\x04 cut short"])
def test_a_failed_resume_leaves_the_lock_as_it_was(search_run, tmp_path, capsys, damage):
    run = tmp_path / "search"
    shutil.copytree(search_run, run)
    (run / "checkpoint.pt").write_bytes(damage)
    (run / ".lock").write_text("4242 (nasp search --out search)")  # the killed writer's
    before = tree(tmp_path)
    assert main(["search", "--resume", str(run)]) == 2
    assert "cannot be read" in capsys.readouterr().err
    assert tree(tmp_path) == before
    assert (run / ".lock").read_text() == "4242 (nasp search --out search)"


def test_a_folder_a_compare_worker_writes_is_named_by_that_worker(tmp_path, capsys):
    """`nasp search --out F` without a flag, while a compare's worker writes F: the answer is
    the process that holds F (not "pass --resume or --overwrite", both of which would be
    refused too), and the worker is named for its run, not by its `python -c` command line."""
    out = tmp_path / "cmp"
    run = out / "nasp-s0"
    proc = spawn("compare", "--strategies", "nasp", "--seeds", "0", "--out", out, *SLOW)
    try:
        wait_for(lambda: locked(run) and (run / "config.json").exists())
        holder = (run / ".lock").read_text()
        assert holder.endswith(f"(nasp compare worker for {run})"), holder
        for argv in (["search", "--out", str(run), *TINY], ["search", "--resume", str(run)]):
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1
            assert f"is in use by process {holder}" in err, err
            assert "already holds a run" not in err
    finally:
        proc.kill()
        proc.wait()


def _interrupt_after(monkeypatch, method: str) -> None:
    real = getattr(run_folder.RunFolder, method)

    def interrupted(self, *args, **kwargs):
        real(self, *args, **kwargs)
        raise KeyboardInterrupt

    monkeypatch.setattr(run_folder.RunFolder, method, interrupted)


def test_ctrl_c_names_the_folder_that_resumes(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    _interrupt_after(monkeypatch, "end_epoch")  # Ctrl-C just after the first checkpoint
    assert main(["search", "--out", str(run), *TINY]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == \
        f"interrupted; continue with `nasp search --resume {run}`"
    monkeypatch.undo()
    assert main(["search", "--resume", str(run), "--quiet"]) == 0


def test_ctrl_c_before_the_first_checkpoint_says_there_is_nothing_to_resume(tmp_path, capsys,
                                                                            monkeypatch):
    run = tmp_path / "run"
    _interrupt_after(monkeypatch, "start")
    assert main(["train", "--genotype", "DARTS_V1", "--out", str(run), *TINY]) == 130
    last = capsys.readouterr().err.splitlines()[-1]
    assert last == (f"interrupted; no epoch of {run} finished, so there is nothing to resume; "
                    "run the command again with --overwrite")


def test_ctrl_c_before_any_folder_says_nothing_was_written(capsys, monkeypatch):
    monkeypatch.setattr(run_folder, "OPENED", [])

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run_folder.RunFolder, "open", interrupted)
    assert main(["search", *TINY]) == 130
    assert capsys.readouterr().err == "interrupted; nothing was written; run the command again\n"
