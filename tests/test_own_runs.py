"""Searches of a user's own model get the guarantees of the built-in spaces, through the same
loop: every strategy, exact resume after kill -9, one writer, data parallel ranks that agree,
the cost regularizer on measured costs, TensorBoard and per-phase times."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import nasp
import own_models
from dist_util import run_ranks, values
from nasp.errors import NaspError

HERE = Path(__file__).resolve().parent
SRC = str(Path(nasp.__file__).resolve().parents[1])
STRATEGIES = ["nasp", "darts", "darts2", "pa", "pa-lazy", "asap", "random"]


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_every_strategy_searches_a_users_model(tmp_path, strategy):
    res = own_models.run("search", str(tmp_path / "r"), epochs=2, strategy=strategy)
    arch = json.loads((tmp_path / "r" / "arch.json").read_text())
    assert arch == res.arch and set(arch) == {"b1", "b2", "join"}
    assert arch["b1"] in ("k3", "k5", "skip") and len(arch["join"]) == 2
    result = json.loads((tmp_path / "r" / "result.json").read_text())
    assert result["arch"] == arch and result["strategy"] == strategy
    record = res.metrics[-1]
    assert {"train_loss", "valid_loss", "valid_acc", "time_arch", "time_forward",
            "time_backward"} <= set(record)
    # the fixed network is the one searched: same output, bit for bit, in eval mode
    fixed = nasp.fix(res.model, res.arch).eval()
    res.model.eval()
    x = torch.randn(3, 1, 8, 8)
    with nasp.choices.use(res.model, res.arch), torch.no_grad():
        assert torch.equal(fixed(x), res.model(x))


def test_fixed_trains_a_given_arch_of_a_users_model(tmp_path):
    arch = {"b1": "k5", "b2": "skip", "join": [0, 2]}
    res = own_models.run("search", str(tmp_path / "r"), epochs=1, strategy="fixed",
                         strategy_options={"arch": arch})
    assert res.arch == arch


def _spawn(*args: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([SRC, str(HERE)]),
           "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, str(HERE / "own_models.py"), *args], env=env,
                            stderr=subprocess.PIPE)


def test_a_search_killed_with_sigkill_and_resumed_ends_as_a_straight_one(tmp_path):
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert _spawn("search", str(straight), "8").wait() == 0
    proc = _spawn("search", str(cut), "8")
    metrics = cut / "metrics.jsonl"
    import time

    deadline = time.monotonic() + 120
    while not (metrics.exists() and metrics.read_text().count("\n") >= 2):
        assert proc.poll() is None, proc.stderr.read().decode()
        assert time.monotonic() < deadline
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (cut / "result.json").exists()  # it was killed mid-search
    assert _spawn("resume", str(cut)).wait() == 0
    for name in ("arch.jsonl", "arch.json"):
        a, b = (straight / name).read_text(), (cut / name).read_text()
        assert a == b, name
    keep = ("epoch", "train_loss", "valid_loss", "valid_acc")
    assert [{k: r[k] for k in keep} for r in _lines(straight / "metrics.jsonl")] == \
        [{k: r[k] for k in keep} for r in _lines(cut / "metrics.jsonl")]


def test_a_resume_needs_the_same_model(tmp_path):
    own_models.run("search", str(tmp_path / "r"), epochs=1)
    with pytest.raises(NaspError, match="from Python with the same objects"):
        nasp.resume(tmp_path / "r", progress=False)
    train, valid = own_models.data()

    class Other(own_models.Small):
        def __init__(self):
            super().__init__()
            self.b2 = nasp.Choice({"k3": own_models.block(4, 3)})

    with pytest.raises(NaspError, match="other choices than the run's"):
        nasp.resume(tmp_path / "r", model=Other(), train=train, valid=valid,
                    loss=own_models.loss, progress=False)


def test_one_writer_per_run_folder(tmp_path):
    """A second search into a folder another process is writing is refused, naming it."""
    import time

    run = tmp_path / "r"
    proc = _spawn("search", str(run), "200")
    try:
        deadline = time.monotonic() + 120
        while not (run / "metrics.jsonl").exists():
            assert proc.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        with pytest.raises(NaspError, match=f"in use by process {proc.pid}"):
            own_models.run("search", str(run), epochs=1, overwrite=True)
    finally:
        proc.kill()
        proc.wait()


def _ranked(d, strategy: str):
    res = own_models.run("search", None, epochs=2, strategy=strategy)
    return {"arch": res.arch, "A": [t.detach().clone() for t in res.strategy.parameters()],
            "weights": {n: p.detach().clone() for n, p in res.model.named_parameters()}}


@pytest.mark.parametrize("strategy", ["nasp", "darts"])
def test_data_parallel_ranks_search_identical_architectures(tmp_path, strategy, monkeypatch):
    monkeypatch.setattr(own_models, "run", _run_in_memory)
    r0, r1 = values(run_ranks(_ranked, tmp_path, timeout_s=60, join_s=300,
                              strategy=strategy))
    assert r0["arch"] == r1["arch"]
    assert all(torch.equal(a, b) for a, b in zip(r0["A"], r1["A"], strict=True))
    assert all(torch.equal(r0["weights"][n], r1["weights"][n]) for n in r0["weights"])


_ORIGINAL_RUN = own_models.run


def _run_in_memory(command, out, **kw):
    kw.setdefault("epochs", 2)
    return _ORIGINAL_RUN(command, False if out is None else out, **kw)


def test_the_cost_regularizer_charges_measured_costs(tmp_path):
    """Parameters and mult-adds per candidate come from one pass over a sample batch; with a
    large λ every block picks its cheapest candidate."""
    from nasp.supernet.model import ModelNet

    model = own_models.Small()
    net = ModelNet(model)
    net.inspect(lambda: model(torch.randn(4, 1, 8, 8)))
    params = net.raw_costs("params")["b1"][0].tolist()
    k3 = sum(p.numel() for p in model.b1.candidates["k3"].parameters())
    k5 = sum(p.numel() for p in model.b1.candidates["k5"].parameters())
    assert params == [k3, k5, 0.0]
    madds = net.raw_costs("madds")["b1"][0].tolist()
    assert madds == [4 * 4 * 9 * 64, 4 * 4 * 25 * 64, 0.0]  # per sample, 8x8 maps
    assert net.raw_costs("params")["join"].abs().sum() == 0
    for cost in ("params", "madds"):
        res = own_models.run("search", False, epochs=3, lambda_cost=50.0, cost=cost)
        assert res.arch["b1"] == "skip" and res.arch["b2"] == "skip", res.arch


def test_tensorboard_logs_and_phase_times(tmp_path):
    pytest.importorskip("tensorboard")
    res = own_models.run("search", str(tmp_path / "r"), epochs=1, tensorboard=True)
    assert list((tmp_path / "r" / "tb").iterdir())
    assert all(res.result[k] > 0 for k in ("time_arch", "time_forward", "time_backward"))


def test_latency_costs_come_from_a_profile_of_the_model(tmp_path):
    """``nasp profile --space FILE.py:FUNCTION`` times every candidate where it sits; a search
    charges the table's latencies (here a hand-made table in which k3 costs nothing, where
    parameters would favour skipping the block)."""
    from nasp.costs import load_table, profile_model, save_table

    space_file = tmp_path / "space.py"
    space_file.write_text("import own_models\n\ndef small(in_channels, num_classes):\n"
                          "    return own_models.Small(in_channels, num_classes)\n")
    ref = f"{space_file}:small"
    table = profile_model(ref, (1, 8, 8), 3, torch.device("cpu"), repeats=2, warmup=0)
    assert set(table["choices"]) == {"b1", "b2"}
    assert set(table["choices"]["b1"]) == {"k3", "k5", "skip"}
    assert table["choices"]["b1"]["k5"]["madds"] > table["choices"]["b1"]["k3"]["madds"] > 0
    for label in ("b1", "b2"):
        for name, ms in (("k3", 0.0), ("k5", 5.0), ("skip", 5.0)):
            table["choices"][label][name]["latency_ms"] = ms
    save_table(table, tmp_path / "costs.json")
    assert load_table(tmp_path / "costs.json")["space"] == ref
    res = own_models.run("search", False, epochs=3, lambda_cost=50.0, cost="latency",
                         cost_table=str(tmp_path / "costs.json"))
    assert res.arch["b1"] == "k3" and res.arch["b2"] == "k3", res.arch


def test_a_space_file_search_resumes_exactly_from_the_command_line(tmp_path):
    """``nasp search --space FILE.py:FUNCTION`` stopped after its first epoch and continued
    with ``nasp search --resume`` ends as the straight run: the folder records the function."""
    from nasp.cli import main
    from nasp.configs import SearchConfig, resolve
    from nasp.loops.search import run_search

    space_file = tmp_path / "space.py"
    space_file.write_text("import own_models\n\ndef small(in_channels, num_classes):\n"
                          "    return own_models.Small(in_channels, num_classes)\n")
    opts = dict(space=f"{space_file}:small", max_train_samples=128, batch_size=16,
                max_steps_per_epoch=3, epochs=3, device="cpu")
    straight, cut = tmp_path / "straight", tmp_path / "cut"
    assert main(["search", "--quiet", "--out", str(straight),
                 *[f"--{k.replace('_', '-')}={v}" for k, v in opts.items()]]) == 0

    class Kill(Exception):
        pass

    def kill(epoch, record):
        if epoch == 0:
            raise Kill

    with pytest.raises(Kill):
        run_search(resolve(SearchConfig, {**opts, "out": str(cut)}), cut, progress=False,
                   on_epoch_end=kill)
    assert main(["search", "--resume", str(cut), "--quiet"]) == 0
    for name in ("arch.jsonl", "arch.json"):
        assert (straight / name).read_text() == (cut / name).read_text(), name


def test_a_latency_budget_on_a_users_model_is_met(tmp_path):
    """``--latency-target`` with a profile of the user's model: the found architecture's
    predicted latency meets the budget (here only k3 fits in both blocks)."""
    from nasp.costs import profile_model, save_table

    space_file = tmp_path / "space.py"
    space_file.write_text("import own_models\n\ndef small(in_channels, num_classes):\n"
                          "    return own_models.Small(in_channels, num_classes)\n")
    table = profile_model(f"{space_file}:small", (1, 8, 8), 3, torch.device("cpu"), repeats=1,
                          warmup=0)
    table["fixed"][0]["latency_ms"] = 1.0
    for label in ("b1", "b2"):
        for name, ms in (("k3", 0.5), ("k5", 3.0), ("skip", 2.0)):
            table["choices"][label][name]["latency_ms"] = ms
    save_table(table, tmp_path / "costs.json")
    res = own_models.run("search", False, epochs=4, latency_target=2.2, latency_margin=0.0,
                         cost_table=str(tmp_path / "costs.json"))
    assert res.arch["b1"] == "k3" and res.arch["b2"] == "k3", res.arch
    assert res.result["latency_met"] and res.result["latency_pred_ms"] <= 2.2
