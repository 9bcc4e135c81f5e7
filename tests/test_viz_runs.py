"""Reading run folders: what a run is, what is optional, and the errors users see."""

from __future__ import annotations

import json

import pytest

from nasp.errors import NaspError
from nasp.viz.runs import find_run_dirs, load_run, load_runs, run_labels
from synthetic import write_search_run


def test_load_run_reads_every_file(tmp_path):
    folder = write_search_run(tmp_path / "r", strategy="darts", seed=3, epochs=2,
                              lambda_params=0.1)
    run = load_run(folder)
    assert run.strategy == "darts" and run.seed == 3 and run.lambda_params == 0.1
    assert run.task == "cnn"
    assert [m["epoch"] for m in run.metrics] == [0, 1]
    assert [a["epoch"] for a in run.arch] == [-1, 0, 1]
    assert set(run.arch[0]["cells"]) == {"normal", "reduce"}
    assert len(run.genotype["normal"]) == 8
    assert run.result["search_time_s"] == pytest.approx(20.0)


def test_load_run_accepts_a_file_inside_the_folder(tmp_path):
    folder = write_search_run(tmp_path / "r")
    assert load_run(folder / "result.json").path == folder


def test_not_a_run_folder_names_config_json(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(NaspError, match="config.json") as err:
        load_run(tmp_path / "empty")
    assert err.value.hint and "nasp search" in err.value.hint


def test_missing_folder_and_stray_file(tmp_path):
    with pytest.raises(NaspError, match="does not exist"):
        load_run(tmp_path / "nope")
    (tmp_path / "notes.txt").write_text("hi")
    with pytest.raises(NaspError, match="is a file"):
        load_run(tmp_path / "notes.txt")


def test_optional_files_may_be_missing_and_require_names_them(tmp_path):
    folder = tmp_path / "train"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"command": "train", "strategy": "nasp"}))
    run = load_run(folder)
    assert run.arch == [] and run.genotype is None and run.result == {}
    with pytest.raises(NaspError, match="arch.jsonl"):
        run.require("arch.jsonl")


def test_damaged_json_is_reported_with_the_file(tmp_path):
    folder = write_search_run(tmp_path / "r")
    (folder / "result.json").write_text("{oops")
    with pytest.raises(NaspError, match="result.json is not valid JSON"):
        load_run(folder)


def test_jsonl_keeps_last_record_per_epoch_and_drops_truncated_tail(tmp_path):
    folder = write_search_run(tmp_path / "r", epochs=2)
    lines = [json.dumps({"epoch": 0, "valid_acc": 0.1}), json.dumps({"epoch": 1, "valid_acc": 0.2}),
             json.dumps({"epoch": 1, "valid_acc": 0.3}), '{"epoch": 2, "valid_a']
    (folder / "metrics.jsonl").write_text("\n".join(lines))
    run = load_run(folder)
    assert [(m["epoch"], m["valid_acc"]) for m in run.metrics] == [(0, 0.1), (1, 0.3)]


def test_bad_jsonl_line_in_the_middle_is_an_error(tmp_path):
    folder = write_search_run(tmp_path / "r")
    (folder / "metrics.jsonl").write_text('{"epoch": 0}\nnot json\n{"epoch": 1}\n')
    with pytest.raises(NaspError, match="line 2"):
        load_run(folder)


def test_genotype_falls_back_to_result_json(tmp_path):
    folder = write_search_run(tmp_path / "r")
    expected = json.loads((folder / "genotype.json").read_text())
    (folder / "genotype.json").unlink()
    assert load_run(folder).genotype == expected


def test_a_parent_folder_expands_to_its_runs(tmp_path):
    write_search_run(tmp_path / "sweep" / "b")
    write_search_run(tmp_path / "sweep" / "a")
    dirs = find_run_dirs([tmp_path / "sweep", tmp_path / "sweep" / "a"])
    assert [d.name for d in dirs] == ["a", "b"]
    assert len(load_runs([tmp_path / "sweep"])) == 2
    (tmp_path / "nothing").mkdir()
    with pytest.raises(NaspError, match="holds none"):
        load_runs([tmp_path / "nothing"])


def test_labels_add_seed_and_lambda_only_when_needed(tmp_path):
    runs = [load_run(write_search_run(tmp_path / n, strategy=s, seed=seed, lambda_params=lam))
            for n, s, seed, lam in [("a", "nasp", 0, 0.1), ("b", "nasp", 1, 0.1),
                                    ("c", "darts", 0, None), ("d", "nasp", 1, 0.5)]]
    assert run_labels(runs) == ["nasp, seed 0", "nasp, seed 1, λ=0.1", "darts",
                                "nasp, seed 1, λ=0.5"]


# --- genotype.json readable by people -----------------------------------------------------------

@pytest.mark.parametrize("genotype", [
    {"normal": [["sep_conv_3x3", 0], ["skip_connect", 1]] * 4, "normal_concat": [2, 3, 4, 5],
     "reduce": [["max_pool_3x3", 0], ["max_pool_3x3", 1]] * 4, "reduce_concat": [2, 3, 4, 5]},
    {"recurrent": [["relu", 0]] * 8, "concat": list(range(1, 9))},
    {"cell": [["nor_conv_3x3", 0], ["none", 0], ["skip_connect", 1]], "cell_concat": [3]},
])
def test_genotype_json_has_one_edge_per_line_and_stays_plain_json(genotype):
    from nasp.genotype import format_genotype_json

    text = format_genotype_json(genotype)
    assert json.loads(text) == genotype and text.endswith("}\n")
    lines = text.splitlines()
    edges = [pair for key, value in genotype.items() if not key.endswith("concat")
             for pair in value]
    for pair in edges:
        assert f"    {json.dumps(pair)}," in lines or f"    {json.dumps(pair)}" in lines
    # one line per edge, per concat key, per cell's opening and closing bracket, and the braces
    cells = len(genotype) // 2
    assert len(lines) == len(edges) + cells * 3 + 2


def test_search_run_genotype_and_published_to_json_are_formatted(tmp_path):
    from nasp.genotype import GENOTYPES, format_genotype_json

    folder = write_search_run(tmp_path / "r", epochs=1)
    text = (folder / "genotype.json").read_text()
    assert text == format_genotype_json(json.loads(text))
    path = tmp_path / "v2.json"
    GENOTYPES["cnn"]["DARTS_V2"].to_json(path)
    assert path.read_text().count("\n") == 8 + 8 + 2 * 3 + 2
