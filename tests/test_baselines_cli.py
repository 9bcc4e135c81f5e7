"""``nasp compare`` end to end on the bundled data, at tiny sizes."""

import json
import re
from pathlib import Path

from nasp.cli import main
from nasp.compare import Progress

TINY = ["--max-train-samples", "128", "--epochs", "1", "--channels", "4", "--layers", "3",
        "--batch-size", "16", "--score-epochs", "1", "--quiet", "--device", "cpu"]


def test_compare_cli_end_to_end_on_bundled_data(tmp_path, capsys):
    """Two runs at once (--jobs 2), each in its own process; the table lists them in the
    order asked for, whichever finished first."""
    out = tmp_path / "cmp"
    code = main(["compare", "--strategies", "pa,random", "--seeds", "0", "--out", str(out),
                 "--data", "fashion-mnist-sample", "--jobs", "2", *TINY])
    assert code == 0
    printed = capsys.readouterr().out
    assert "| pa | 1 |" in printed and "| random | 1 |" in printed
    assert (out / "comparison.md").read_text() in printed
    for name in ("pa-s0", "random-s0"):
        result = json.loads((out / name / "result.json").read_text())
        assert 0 <= result["final_test_acc"] <= 1 and result["eval_params_m"] > 0
        assert json.loads((out / name / "config.json").read_text())["data"] == \
            "fashion-mnist-sample"
    assert json.loads((out / "compare.json").read_text())["strategies"] == ["pa", "random"]
    lines = printed.splitlines()
    assert lines[0] == "compare: 2 runs, 0 finished earlier and reused, 2 to run, 2 at a time"
    runs = [line for line in lines if line.startswith("[")]
    # after the first run one is left, and it runs beside the first: about one run's time
    assert re.match(r"\[1/2 runs, \d:\d\d:\d\d elapsed, about \d:\d\d:\d\d left\] "
                    r"(pa|random)-s0: search ran", runs[0]), runs
    assert re.match(r"\[2/2 runs, \d:\d\d:\d\d elapsed, nothing left\] (pa|random)-s0: "
                    r"search ran", runs[1]), runs
    # the same compare again reuses both runs, and says so before anything else
    assert main(["compare", "--strategies", "pa,random", "--seeds", "0", "--out", str(out),
                 "--data", "fashion-mnist-sample", "--jobs", "2", *TINY]) == 0
    again = capsys.readouterr().out.splitlines()
    assert again[0] == "compare: 2 runs, 2 finished earlier and reused, 0 to run"
    assert [line.split("] ")[0].split(", ")[-1] for line in again if line.startswith("[")] \
        == ["nothing left", "nothing left"]


def test_compare_progress_estimates_from_the_runs_that_ran_and_the_runs_at_once():
    """Time left = runs still to run / runs at once x mean time of the runs that ran; a reused
    run's moment does not count."""
    lines = []
    report = Progress(total=5, reused=1, jobs=2, say=lines.append)
    assert lines == ["compare: 5 runs, 1 finished earlier and reused, 4 to run, 2 at a time"]
    report("a", 10.0, reused=False)  # 3 left, 2 at a time, 10 s each
    report("r", 0.1, reused=True)  # no news about the time a run takes
    report("b", 20.0, reused=False)  # 2 left, 2 at a time, 15 s each
    report("c", 30.0, reused=False)  # 1 left, alone, 20 s
    report("d", 40.0, reused=False)
    left = [line.split("elapsed, ")[1].split("]")[0] for line in lines[1:]]
    assert left == ["about 0:00:15 left", "about 0:00:15 left", "about 0:00:15 left",
                    "about 0:00:20 left", "nothing left"]
    first = []  # a reused run first: nothing has run yet to time
    Progress(total=2, reused=1, jobs=2, say=first.append)("r", 1.0, reused=True)
    assert "time left not known yet" in first[1]


def test_compare_jobs_are_checked(tmp_path, capsys):
    assert main(["compare", "--strategies", "pa", "--out", str(tmp_path), "--jobs", "0",
                 *TINY]) == 2
    assert "invalid jobs 0 (use --jobs 1 or more)" in capsys.readouterr().err
    assert main(["compare", "--strategies", "pa", "--out", str(tmp_path), "--jobs", "2",
                 "--in-process", *TINY]) == 2
    assert "parallel runs need a process each" in capsys.readouterr().err


def test_compare_cli_reports_bad_options(tmp_path, capsys):
    code = main(["compare", "--strategies", "asap", "--seeds", "0", "--out", str(tmp_path),
                 "--strategy-options", '{"asap": {"temp": 1}}', *TINY])
    assert code == 2
    err = capsys.readouterr().err
    assert "unknown option(s) for strategy 'asap': temp" in err and "t0" in err


def test_compare_cli_reports_an_error_raised_in_the_run_process(tmp_path, capsys):
    """Each run has its own process; a user error there still reads as one here."""
    code = main(["compare", "--strategies", "random", "--seeds", "0", "--out", str(tmp_path),
                 "--data", "folder", "--data-root", str(tmp_path / "missing"), *TINY])
    assert code == 2
    assert "error:" in capsys.readouterr().err


def test_compare_plan_writes_runnable_lines_then_tabulates_what_finished(tmp_path, capsys):
    """--plan runs nothing: it writes one self-contained command line per (strategy, seed)
    (search, then scoring); once some have run, the same command tabulates them and names the
    lines still to run."""
    import os
    import subprocess
    import sys

    import nasp

    plan, out = tmp_path / "plan.txt", tmp_path / "cmp"
    argv = ["compare", "--strategies", "pa,random", "--seeds", "0", "--out", str(out),
            "--data", "fashion-mnist-sample", "--plan", str(plan),
            "--launch", f"{sys.executable} -m nasp", *TINY]
    assert main(argv) == 0
    lines = plan.read_text().splitlines()
    assert len(lines) == 2 and not (out / "pa-s0").exists()  # nothing ran yet
    assert "search --continue" in lines[0] and "--strategy fixed" in lines[0]
    env = {**os.environ, "PYTHONPATH": str(Path(nasp.__file__).resolve().parents[1]),
           "OMP_NUM_THREADS": "1"}
    subprocess.run(["bash", "-c", lines[0]], check=True, env=env, cwd="/",
                   capture_output=True)  # from anywhere: the lines hold absolute paths
    capsys.readouterr()
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "1 of 2 runs finished; not yet: random-s0 (search; line 2)" in printed
    assert "| pa | 1 |" in printed
    result = json.loads((out / "pa-s0" / "result.json").read_text())
    assert 0 <= result["final_test_acc"] <= 1  # the scoring line's result, recorded
    # the same line again (a re-queued job) does nothing new
    before = (out / "pa-s0" / "checkpoint.pt").stat().st_mtime_ns
    subprocess.run(["bash", "-c", lines[0]], check=True, env=env, capture_output=True)
    assert (out / "pa-s0" / "checkpoint.pt").stat().st_mtime_ns == before
    # a plan file of other options is refused
    assert main([*argv[:-len(TINY)], *TINY[:-2], "--epochs", "3"]) == 2
    assert "plan made with other options" in capsys.readouterr().err


def test_compare_under_torchrun_is_refused_before_anything_is_written(tmp_path, capsys,
                                                                      monkeypatch):
    """Under torchrun every rank would run the whole comparison into one folder; the way to
    run its searches on several ranks is --plan with a torchrun --launch, which it names."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    code = main(["compare", "--strategies", "random", "--seeds", "0",
                 "--out", str(tmp_path / "cmp"), *TINY])
    assert code == 2
    err = capsys.readouterr().err
    assert "not run under torchrun" in err and "--plan FILE --launch 'torchrun" in err
    assert not (tmp_path / "cmp").exists()
