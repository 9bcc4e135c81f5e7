"""``nasp plot``, ``nasp draw`` and ``nasp report`` through their add_arguments/run pair."""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from types import ModuleType

import pytest

from nasp.cli import draw as draw_cli
from nasp.cli import plot as plot_cli
from nasp.cli import report as report_cli
from nasp.errors import NaspError
from synthetic import write_search_run


def call(module: ModuleType, argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    module.add_arguments(parser)
    return module.run(parser.parse_args([str(a) for a in argv]))


def small_run(path, **kw):
    """A search run with one cell in arch.jsonl, so arch plots stay quick."""
    folder = write_search_run(path, epochs=2, **kw)
    records = [json.loads(line) for line in (folder / "arch.jsonl").read_text().splitlines()]
    for rec in records:
        del rec["cells"]["reduce"]
    (folder / "arch.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n")
    return folder


def test_modules_have_help_text():
    for module in (plot_cli, draw_cli, report_cli):
        assert module.__doc__ and module.__doc__.strip()


def test_plot_all_for_a_lambda_sweep(tmp_path, capsys):
    small_run(tmp_path / "runs" / "a", strategy="nasp", lambda_params=0.1)
    small_run(tmp_path / "runs" / "b", strategy="nasp", seed=1, lambda_params=0.2)
    assert call(plot_cli, [tmp_path / "runs", "-o", tmp_path / "out", "--format", "svg"]) == 0
    out = tmp_path / "out"
    expected = {"a/arch-normal-A.svg", "a/arch-normal-A_bar.svg", "b/arch-normal-A.svg",
                "b/arch-normal-A_bar.svg", "valid-vs-time.svg", "lambda.svg"}
    assert {str(p.relative_to(out)) for p in out.rglob("*.svg")} == expected
    printed = capsys.readouterr().out.split()
    assert len(printed) == len(expected)


def test_plot_time_only_single_run_png_and_svg(tmp_path):
    run = small_run(tmp_path / "r")
    assert call(plot_cli, [run, "--kind", "time", "-o", tmp_path / "o"]) == 0
    assert sorted(p.name for p in (tmp_path / "o").iterdir()) == ["valid-vs-time.png",
                                                                  "valid-vs-time.svg"]


def test_plot_lambda_without_lambda_is_a_user_error(tmp_path):
    run = small_run(tmp_path / "r", strategy="darts")
    with pytest.raises(NaspError, match="lambda"):
        call(plot_cli, [run, "--kind", "lambda", "-o", tmp_path / "o"])


def test_plot_rejects_a_folder_that_is_not_a_run(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(NaspError, match="not a run folder"):
        call(plot_cli, [tmp_path / "x"])


def test_draw_from_run_folder_genotype_file_and_result(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)  # no Graphviz needed
    run = write_search_run(tmp_path / "r", epochs=1)
    ops = {op for cell in ("normal", "reduce")
           for op, _ in json.loads((run / "genotype.json").read_text())[cell]}
    for source in (run, run / "genotype.json", run / "result.json"):
        out = tmp_path / f"{source.name}.svg"
        assert call(draw_cli, [source, "-o", out]) == 0
        root = ET.parse(out).getroot()
        texts = {"".join(t.itertext()).strip() for t in root.iter() if t.tag.endswith("text")}
        assert ops <= texts
    assert str(tmp_path / "r.svg") in capsys.readouterr().out


def test_draw_dot_text_needs_no_graphviz_and_split(tmp_path):
    run = write_search_run(tmp_path / "r", task="lm", epochs=1)
    assert call(draw_cli, [run, "-o", tmp_path / "cell.gv", "--split"]) == 0
    text = (tmp_path / "cell-recurrent.gv").read_text()
    assert text.startswith("digraph") and 'label="h_{t-1}"' in text


def test_draw_published_name_through_nasp_genotype(tmp_path):
    pytest.importorskip("nasp.genotype")
    assert call(draw_cli, ["DARTS_V2", "-o", tmp_path / "v2.dot"]) == 0
    assert "sep_conv_3x3" in (tmp_path / "v2.dot").read_text()
    assert call(draw_cli, ["DARTS_V2", "--task", "lm", "-o", tmp_path / "rnn.dot"]) == 0
    assert "recurrent" in (tmp_path / "rnn.dot").read_text()


def test_draw_png_of_a_published_name_and_graphviz_engine_without_dot(tmp_path, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert call(draw_cli, ["NASP_12", "-o", tmp_path / "n.png"]) == 0
    assert (tmp_path / "n.png").read_bytes().startswith(b"\x89PNG")
    with pytest.raises(NaspError, match="dot") as err:
        call(draw_cli, ["NASP_12", "-o", tmp_path / "g.svg", "--engine", "graphviz"])
    assert "matplotlib" in err.value.hint


def test_draw_unknown_name_is_a_user_error(tmp_path):
    with pytest.raises(NaspError):
        call(draw_cli, ["NO_SUCH_ARCH", "-o", tmp_path / "x.svg"])


def test_draw_without_nasp_genotype_accepts_only_files(tmp_path, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "nasp.genotype", None)  # makes the import fail
    with pytest.raises(NaspError, match="not a file or folder") as err:
        call(draw_cli, ["DARTS_V2", "-o", tmp_path / "x.dot"])
    assert "genotype.json" in err.value.hint


def test_report_cli_writes_the_page(tmp_path, capsys):
    run = small_run(tmp_path / "r")
    out = tmp_path / "site" / "index.html"
    assert call(report_cli, [run, "-o", out, "--title", "T"]) == 0
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert capsys.readouterr().out.strip() == str(out)
    assert "by epoch" not in out.read_text()
    assert call(report_cli, [run, "-o", out, "--full"]) == 0
    assert "by epoch" in out.read_text()  # the per-epoch architecture figures


def test_plot_report_and_draw_run_without_importing_torch(tmp_path):
    """The viz commands read run folders only: loading torch would add seconds to each call."""
    code = (
        "import sys\n"
        "from nasp.cli import main\n"
        f"for argv in (['draw', 'DARTS_V2', '-o', r'{tmp_path / 'c.png'}'],):\n"
        "    try:\n"
        "        main(argv)\n"
        "    except SystemExit as e:\n"
        "        assert not e.code, e.code\n"
        "import nasp.viz.plots, nasp.viz.report, nasp.viz.runs, nasp.viz.tables  # noqa\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr
