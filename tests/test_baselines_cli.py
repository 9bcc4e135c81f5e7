"""``nasp compare`` end to end on the bundled data, at tiny sizes."""

import json
from pathlib import Path

from nasp.cli import main

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
