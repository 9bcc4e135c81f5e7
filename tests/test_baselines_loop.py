"""The baselines inside the real search loop, and ``nasp compare``, on a tiny synthetic task.

The synthetic task stands in for the image data (``build_task`` is patched), so these tests
need no data files and run in seconds; one end-to-end test uses the bundled data."""

import json

import pytest

from helpers import TINY, tiny_cfg, use_synthetic_task
from nasp.compare import compare
from nasp.errors import NaspError
from nasp.genotype import Genotype
from nasp.loops.search import run_search
from nasp.strategies.discretize import selection_to_genotype


@pytest.fixture(autouse=True)
def synthetic(monkeypatch):
    use_synthetic_task(monkeypatch)


cfg = tiny_cfg


def test_random_search_trains_each_candidate_alike_and_keeps_the_best(tmp_path):
    res = run_search(cfg(strategy="random", epochs=4,
                         strategy_options={"candidates": 2}), tmp_path, progress=False)
    m = res.metrics
    assert [r["candidate"] for r in m] == [0, 0, 1, 1]
    # each candidate gets the same fresh cosine: the same learning rates, epoch for epoch
    assert m[0]["lr"] == pytest.approx(m[2]["lr"]) and m[1]["lr"] == pytest.approx(m[3]["lr"])
    assert m[0]["lr"] > m[1]["lr"]
    s = res.strategy
    best = 0 if m[1]["valid_acc"] >= m[3]["valid_acc"] else 1  # ties: the earlier
    assert s.best() == best
    assert res.genotype == selection_to_genotype(s.candidates[best], s.cells)
    assert json.loads((tmp_path / "genotype.json").read_text()) == res.genotype.to_dict()


def test_random_search_resumes_exactly(tmp_path):
    options = dict(strategy="random", epochs=4, strategy_options={"candidates": 2})
    full = run_search(cfg(**options), tmp_path / "full", progress=False)

    class Stop(Exception):
        pass

    def stop(epoch, record):
        if epoch == 1:
            raise Stop

    with pytest.raises(Stop):
        run_search(cfg(**options), tmp_path / "cut", progress=False, on_epoch_end=stop)
    resumed = run_search(cfg(**options), tmp_path / "cut", resume=True, progress=False)
    keys = ("train_loss", "valid_acc", "lr", "candidate")
    assert [{k: r[k] for k in keys} for r in resumed.metrics] == \
        [{k: r[k] for k in keys} for r in full.metrics]
    assert resumed.genotype == full.genotype
    # result.json names what its metrics measured: the chosen candidate's last epoch
    result = json.loads((tmp_path / "cut" / "result.json").read_text())
    best = resumed.strategy.best()
    assert result["search_epoch"] == 2 * best + 1
    assert result["search_valid_acc"] == full.metrics[2 * best + 1]["valid_acc"]
    assert "candidate" in result["search_network"]


def test_asap_search_stops_when_every_edge_has_one_op(tmp_path):
    res = run_search(cfg(strategy="asap", epochs=8, arch_lr=0.05,
                         strategy_options={"gamma": 0.1}), tmp_path, progress=False)
    assert res.strategy.finished()
    assert len(res.metrics) < 8  # stopped early
    alive = [r["asap_alive_ops"] for r in res.metrics]
    assert alive[-1] == 28 and alive == sorted(alive, reverse=True)
    arch = [json.loads(line) for line in (tmp_path / "arch.jsonl").read_text().splitlines()]
    assert set(arch[-1]["cells"]["normal"]["weights"]) == {"alpha", "weights"}
    res.genotype.validate()


@pytest.mark.parametrize("strategy", ["pa", "pa-lazy"])
def test_pa_variants_run_in_the_loop(tmp_path, strategy):
    res = run_search(cfg(strategy=strategy, epochs=1), tmp_path, progress=False)
    res.genotype.validate()
    arch = json.loads((tmp_path / "arch.jsonl").read_text().splitlines()[-1])
    assert set(arch["cells"]["normal"]["weights"]) == {"A", "A_bar"}


def test_fixed_search_returns_its_genotype(tmp_path):
    res = run_search(cfg(strategy="fixed", epochs=1,
                         strategy_options={"genotype": "DARTS_V2"}), tmp_path, progress=False)
    assert res.genotype == Genotype.from_dict(json.loads(
        (tmp_path / "genotype.json").read_text()))
    assert res.metrics[0]["time_arch"] < res.metrics[0]["time_forward"] + 1.0


def test_compare_writes_the_table_and_continues(tmp_path, capsys):
    options = dict(TINY, epochs=2)
    rows = compare("pa,random", "0,1", tmp_path, score_epochs=1, progress=False, isolate=False,
                   **options)
    assert [r["strategy"] for r in rows] == ["pa", "random"]
    assert all(r["runs"] == 2 and r["test_acc_std"] is not None for r in rows)
    for name in ("pa-s0", "pa-s1", "random-s0", "random-s1"):
        result = json.loads((tmp_path / name / "result.json").read_text())
        score = json.loads((tmp_path / name / "score" / "result.json").read_text())
        # scored on the held-out test split, never on the architecture split
        assert result["final_test_acc"] == score["search_test_acc"]
        assert "search_valid_acc" not in score
        assert result["score_epochs"] == 1 and result["eval_params_m"] > 0
        assert score["genotype"] == result["genotype"]  # the search's architecture was scored
        config = json.loads((tmp_path / name / "score" / "config.json").read_text())
        assert config["strategy"] == "fixed" and config["seed"] == int(name[-1])
        assert config["evaluate_on"] == "test"
    table = (tmp_path / "comparison.md").read_text()
    assert "| pa | 2 |" in table and "| random | 2 |" in table
    assert (tmp_path / "comparison.csv").read_text().startswith("strategy,runs,test_acc_mean")
    # a second call reuses every run: nothing is searched again
    before = {p: p.stat().st_mtime_ns for p in tmp_path.rglob("checkpoint.pt")}
    again = compare("pa,random", "0,1", tmp_path, score_epochs=1, progress=False, isolate=False,
                    **options)
    assert again == rows
    assert {p: p.stat().st_mtime_ns for p in tmp_path.rglob("checkpoint.pt")} == before
    assert "reused" in capsys.readouterr().out
    # another scoring budget rescores the same searches
    compare("pa", "0", tmp_path, score_epochs=2, progress=False, isolate=False, **options)
    assert json.loads((tmp_path / "pa-s0" / "result.json").read_text())["score_epochs"] == 2
    assert (tmp_path / "pa-s0" / "checkpoint.pt").stat().st_mtime_ns == \
        before[tmp_path / "pa-s0" / "checkpoint.pt"]
    # other options into the same folder are an error, not a silent mix
    with pytest.raises(NaspError, match="other options.*epochs"):
        compare("pa", "0", tmp_path, score_epochs=1, progress=False, isolate=False,
                **dict(options, epochs=3))


def test_compare_resumes_an_interrupted_search(tmp_path):
    options = dict(TINY, epochs=2)

    class Stop(Exception):
        pass

    def stop(epoch, record):
        raise Stop

    c = cfg(strategy="random", seed=0, epochs=2, out=str(tmp_path / "random-s0"))
    with pytest.raises(Stop):
        run_search(c, tmp_path / "random-s0", progress=False, on_epoch_end=stop)
    lines = []
    compare("random", "0", tmp_path, score_epochs=1, progress=False, isolate=False,
            log=lines.append, **options)
    assert lines[0] == "compare: 1 run, 0 finished earlier and reused, 1 to run"
    assert "search resumed" in lines[1] and lines[1].startswith("[1/1 runs, ")
    assert "nothing left]" in lines[1]
    metrics = (tmp_path / "random-s0" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(m)["epoch"] for m in metrics] == [0, 1]


@pytest.mark.parametrize("kw, match", [
    (dict(strategies="nasp,nope"), "unknown strategy 'nope'"),
    (dict(seeds="0,x"), "cannot read seeds"),
    (dict(seeds="1,1"), "repeat"),
    (dict(strategy_options={"asap": {"t0": 2.0}}), "not in --strategies"),
    (dict(strategy_options={"pa": 3}), "must be a JSON object"),
    (dict(seed=3), "sets seed"),
    (dict(epochs=0), "invalid epochs"),
    (dict(score_epochs=0), "score epochs"),
])
def test_compare_rejects_bad_input(tmp_path, kw, match):
    args = dict(strategies="pa", seeds="0", progress=False, isolate=False, **TINY)
    args.update(kw)
    with pytest.raises(NaspError, match=match):
        compare(args.pop("strategies"), args.pop("seeds"), tmp_path, **args)
