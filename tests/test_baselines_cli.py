"""``nasp compare`` end to end on the bundled data, at tiny sizes."""

import json

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
        assert 0 <= result["final_valid_acc"] <= 1 and result["eval_params_m"] > 0
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
