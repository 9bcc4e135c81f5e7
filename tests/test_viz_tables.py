"""The comparison table: grouping, mean ± std over seeds, no fallbacks, its three renderings."""

from __future__ import annotations

import csv
import json
from html.parser import HTMLParser
from statistics import stdev

import pytest

from nasp.viz.runs import load_run
from nasp.viz.tables import FIELDS, comparison_rows, to_csv, to_html, to_markdown
from synthetic import write_search_run


def make(tmp_path, name, **kw):
    return load_run(write_search_run(tmp_path / name, **kw))


@pytest.fixture
def runs(tmp_path):
    return [
        make(tmp_path, "nasp-0", strategy="nasp", seed=0,
             result={"final_test_acc": 0.90, "search_valid_acc": 0.5, "eval_params_m": 3.0,
                     "search_network": "the discrete network under Ā",
                     "search_time_s": 100.0, "time_arch": 10.0, "time_forward": 20.0,
                     "time_backward": 30.0, "peak_mem_mb": 500.0}),
        make(tmp_path, "darts-0", strategy="darts", seed=0,
             result={"final_test_acc": 0.85, "search_valid_acc": 0.7, "eval_params_m": 3.5,
                     "search_network": "the softmax mixture", "search_time_s": 400.0}),
        make(tmp_path, "nasp-1", strategy="nasp", seed=1,
             result={"final_test_acc": 0.94, "search_valid_acc": 0.6, "eval_params_m": 4.0,
                     "search_network": "the discrete network under Ā",
                     "search_time_s": 300.0, "time_arch": 30.0, "time_forward": 40.0,
                     "time_backward": 50.0, "peak_mem_mb": 700.0}),
    ]


def test_rows_group_by_strategy_in_order_with_mean_and_sample_std(runs):
    nasp, darts = comparison_rows(runs)
    assert nasp["strategy"] == "nasp" and nasp["runs"] == 2
    assert nasp["test_acc_mean"] == pytest.approx(0.92)
    assert nasp["test_acc_std"] == pytest.approx(stdev([0.90, 0.94]))
    assert nasp["search_acc_mean"] == pytest.approx(0.55)
    assert nasp["search_network"] == "the discrete network under Ā"
    assert nasp["params_m"] == pytest.approx(3.5)
    assert nasp["search_time_s"] == pytest.approx(200.0)
    assert (nasp["time_arch_s"], nasp["time_forward_s"], nasp["time_backward_s"]) == \
        pytest.approx((20.0, 30.0, 40.0))
    assert nasp["peak_mem_mb"] == pytest.approx(600.0)
    assert darts["runs"] == 1 and darts["test_acc_mean"] == pytest.approx(0.85)
    assert darts["test_acc_std"] is None  # one seed: undefined, shown as "–"
    assert list(nasp) == list(FIELDS)


def test_a_search_that_was_not_retrained_has_no_test_accuracy(tmp_path):
    """No silent fallback: the search-time figure never stands in for the retrained one."""
    (row,) = comparison_rows([make(tmp_path, "r", result={"search_valid_acc": 0.9,
                                                           "final_test_acc": None})])
    assert row["test_acc_mean"] is None and row["search_acc_mean"] == pytest.approx(0.9)
    assert "| – | 90.00 ± – |" in to_markdown([row])


def test_phase_times_and_memory_fall_back_to_metrics(tmp_path):
    run = make(tmp_path, "r", epochs=3, epoch_time=10.0)
    result = json.loads((run.path / "result.json").read_text())
    for key in ("time_arch", "time_forward", "time_backward", "peak_mem_mb", "search_time_s"):
        del result[key]
    (run.path / "result.json").write_text(json.dumps(result))
    (row,) = comparison_rows([load_run(run.path)])
    assert row["time_arch_s"] == pytest.approx(3 * 3.0)
    assert row["time_backward_s"] == pytest.approx(3 * 4.0)
    assert row["search_time_s"] == pytest.approx(30.0)
    assert row["peak_mem_mb"] == pytest.approx(100.0)


def test_markdown_shows_percent_and_dash_for_single_runs(runs):
    text = to_markdown(comparison_rows(runs))
    lines = text.strip().splitlines()
    assert lines[0].startswith("| strategy | runs | test acc, retrained (%) | search-time "
                               "valid acc (%) | params (M) |")
    assert lines[1].startswith("| :--- | ---: |")
    assert lines[2] == ("| nasp | 2 | 92.00 ± 2.83 | 55.00 ± 7.07 | 3.50 | 200.0 | 20.0 | 30.0 "
                        "| 40.0 | 600 |")
    # the darts run keeps the synthetic phase times: 3 epochs of 3 + 2 + 4 s
    assert lines[3] == ("| darts | 1 | 85.00 ± – | 70.00 ± – | 3.50 | 400.0 | 9.0 | 6.0 | 12.0 "
                        "| 100 |")
    # the splits and what each search-time figure measured are written under the table
    assert "held-out test set" in text and "darts: search-time metric of the softmax" in text


def test_language_model_runs_get_a_perplexity_column(tmp_path):
    rows = comparison_rows([make(tmp_path, "a", task="lm", result={"final_test_ppl": 80.0}),
                            make(tmp_path, "b", task="lm", seed=1,
                                 result={"final_test_ppl": 90.0})])
    text = to_markdown(rows)
    assert "test ppl" in text and "acc" not in text.splitlines()[0]
    assert "| 85.00 ± 7.07 |" in text


def test_csv_holds_raw_numbers(runs, tmp_path):
    path = to_csv(comparison_rows(runs), tmp_path / "t" / "table.csv")
    with path.open() as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == list(FIELDS)
    assert float(rows[0]["test_acc_mean"]) == pytest.approx(0.92)
    assert rows[1]["test_acc_std"] == "" and rows[1]["strategy"] == "darts"


def test_html_table_escapes_cells(tmp_path):
    run = make(tmp_path, "x", strategy="<b>evil</b>")
    text = to_html(comparison_rows([run]))
    assert "<b>" not in text and "&lt;b&gt;evil&lt;/b&gt;" in text

    class Cells(HTMLParser):
        def __init__(self):
            super().__init__()
            self.tags: list[str] = []

        def handle_starttag(self, tag, attrs):
            self.tags.append(tag)

    parser = Cells()
    parser.feed(text)
    assert parser.tags.count("tr") == 2 and parser.tags.count("th") == 10


def _env(name: str, threads: int = 1, world: int = 1) -> dict:
    return {"device": {"type": "cpu", "name": name, "threads": threads}, "world_size": world,
            "torch": "2.13.0", "python": "3.11.7", "nasp": "0.1.0"}


def test_the_notes_say_where_times_were_measured_and_when_runs_differ(tmp_path):
    """A search time means little without its machine: one environment is named under the
    table; runs from different ones (another CPU, threads, process count) are called out."""
    same = [make(tmp_path, f"s{i}", strategy=s, seed=0, result={"environment": _env("x86_64")})
            for i, s in enumerate(("nasp", "darts"))]
    text = to_markdown(comparison_rows(same))
    assert "Times and memory measured on: x86_64 (cpu, 1 thread), 1 process, torch 2.13.0" in text
    assert "different environments" not in text

    mixed = [make(tmp_path, "m0", strategy="nasp", seed=0,
                  result={"environment": _env("x86_64", threads=2, world=2)}),
             make(tmp_path, "m1", strategy="darts", seed=0, result={"environment": _env("x86_64")}),
             make(tmp_path, "m2", strategy="darts", seed=1, result={})]  # an older run: unknown
    rows = comparison_rows(mixed)
    text = to_markdown(rows)
    assert "different environments" in text
    assert "nasp: x86_64 (cpu, 2 threads), 2 processes" in text
    assert "darts: not recorded; x86_64 (cpu, 1 thread), 1 process" in text
    assert rows[1]["environment"].count(";") == 1  # one entry per distinct environment


def test_a_search_records_its_environment(tmp_path):
    import torch

    import nasp

    res = nasp.search(out=False, progress=False, max_train_samples=64, channels=4, layers=3,
                      batch_size=16, max_steps_per_epoch=1, epochs=1, device="cpu")
    env = res.result["environment"]
    assert env["device"]["type"] == "cpu" and env["device"]["threads"] == torch.get_num_threads()
    assert env["world_size"] == 1 and env["torch"] == torch.__version__
    assert env["nasp"] == nasp.__version__
