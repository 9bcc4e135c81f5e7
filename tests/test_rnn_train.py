"""The evaluation language model, ``nasp train --task lm`` and an LM search end to end."""

from __future__ import annotations

import json

import pytest
import torch

from nasp.cli import main
from nasp.configs import LMTrainConfig, SearchConfig, resolve
from nasp.errors import NaspError
from nasp.genotype import GENOTYPES, Genotype, rnn_genotype
from nasp.loops import train_lm
from nasp.models.rnn import RNNModel, count_lm_params
from test_rnn_data import write_corpus

V2 = GENOTYPES["lm"]["DARTS_V2"]
TINY = ["--emsize", "8", "--nhid", "8", "--batch-size", "4", "--eval-batch-size", "4",
        "--test-batch-size", "4", "--bptt", "6", "--max-steps-per-epoch", "4", "--log-every",
        "2", "--quiet", "--device", "cpu"]


def test_count_lm_params_darts_v2_is_23m():
    n = count_lm_params(V2)
    # embedding (tied decoder) + W0 + 8 node matrices + decoder bias
    assert n == 10000 * 850 + 1700 * 1700 + 8 * 850 * 1700 + 10000 == 22_960_000
    assert round(n / 1e6) == 23
    assert count_lm_params(GENOTYPES["lm"]["DARTS_V1"]) == n  # the count depends on sizes only


def test_eval_model_shapes_and_genotype_checks():
    model = RNNModel(V2, 30, 8, 8)
    x = torch.randint(0, 30, (5, 2))
    logits, h, raw = model(x, model.init_hidden(2))
    assert logits.shape == (5, 2, 30) and h.shape == (2, 8) and raw.shape == (5, 2, 8)
    assert torch.equal(raw[-1], h)
    assert model.decoder.weight is model.encoder.weight
    assert not any(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules())
    # a "none" node is zero and has no matrix (rnn-darts searches that keep none can pick it)
    with_none = rnn_genotype([("none", 0)] + list(V2.recurrent[1:]))
    model = RNNModel(with_none, 30, 8, 8)
    assert count_lm_params(with_none, 30, 8, 8) == count_lm_params(V2, 30, 8, 8) - 8 * 16
    logits, _, _ = model(x, model.init_hidden(2))
    logits.sum().backward()
    assert torch.isfinite(logits).all()
    with pytest.raises(NaspError, match="CNN"):
        RNNModel(GENOTYPES["cnn"]["DARTS_V2"], 30, 8, 8)
    with pytest.raises(NaspError, match="emsize"):
        RNNModel(V2, 30, 8, 16)


def test_eval_cell_follows_the_genotype():
    """Node i reads its genotype predecessor: changing a node nobody reads leaves the others."""
    torch.manual_seed(0)
    model = RNNModel(V2, 30, 6, 6).eval()
    cell = model.cell
    assert cell.preds == [0, 1, 1, 1, 2, 5, 3, 5]
    assert cell.consumers[1] == [1, 2, 3] and cell.consumers[5] == [5, 7]
    x = torch.randn(1, 2, 6)
    h = torch.randn(2, 6)
    out, _ = cell(x, h)
    with torch.no_grad():
        cell.ws[7].zero_()  # node 8 (relu of node 5): its value changes to node 5's
    out2, _ = cell(x, h)
    assert not torch.allclose(out, out2)


def _train(tmp_path, root, out, *extra):
    return main(["train", "--task", "lm", "--genotype", "DARTS_V2", "--data", "ptb",
                 "--data-root", str(root), "--preset", "quick", "--out", str(out), *TINY,
                 *extra])


def test_train_lm_end_to_end_and_bit_identical_resume(tmp_path):
    root = write_corpus(tmp_path / "ptb", lines=150)
    assert _train(tmp_path, root, tmp_path / "full", "--epochs", "2") == 0
    run = tmp_path / "full"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "result.json"):
        assert (run / name).exists(), name
    config = json.loads((run / "config.json").read_text())
    assert config["command"] == "train" and config["task"] == "lm"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1]
    for key in ("train_loss", "train_ppl", "valid_loss", "valid_ppl", "lr", "epoch_time",
                "wall_time"):
        assert key in records[0]
    result = json.loads((run / "result.json").read_text())
    assert result["valid_ppl"] > 1 and result["test_ppl"] > 1
    assert result["environment"]["world_size"] == 1  # where the time was measured
    assert result["params_m"] == pytest.approx(count_lm_params(V2, 33, 8, 8) / 1e6)

    assert _train(tmp_path, root, tmp_path / "half", "--epochs", "1") == 0
    # the folder's config.json says task lm: --task need not be repeated
    assert main(["train", "--resume", str(tmp_path / "half"), "--epochs", "2",
                 "--quiet"]) == 0
    half = [json.loads(line) for line in (tmp_path / "half/metrics.jsonl").read_text().splitlines()]
    strip = ("epoch_time", "wall_time", "peak_mem_mb")
    assert [{k: v for k, v in r.items() if k not in strip} for r in half] == \
        [{k: v for k, v in r.items() if k not in strip} for r in records]
    a = torch.load(run / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "half/checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((tmp_path / "half/result.json").read_text())["test_ppl"] == \
        result["test_ppl"]


def test_resume_rejects_changed_options(tmp_path, capsys):
    root = write_corpus(tmp_path / "ptb", lines=150)
    assert _train(tmp_path, root, tmp_path / "r", "--epochs", "1") == 0
    assert main(["train", "--task", "lm", "--resume", str(tmp_path / "r"), "--lr", "3"]) == 2
    assert "--lr cannot change" in capsys.readouterr().err


def test_switch_to_asgd_and_resume_across_it(tmp_path, monkeypatch):
    """Validation losses that stop improving switch SGD to ASGD (AWD-LSTM's rule), and a run
    resumed across the switch ends bit-identical to an uninterrupted one."""
    real = train_lm.evaluate_lm
    fakes: list[float] = []

    def evaluate(model, data, bptt, d=None):  # scripted validation losses, then the real thing
        real(model, data, bptt, d)
        return fakes.pop(0) if fakes else real(model, data, bptt, d)

    monkeypatch.setattr(train_lm, "evaluate_lm", evaluate)
    root = write_corpus(tmp_path / "ptb", lines=150)
    # epoch 2: 4.5 is better than min(5.0) (the best of more than 1 epoch ago): SGD goes on;
    # epoch 3: 4.6 is worse than min(5.0, 4.0): switch, so epoch 4 trains with ASGD
    fakes[:] = [5.0, 4.0, 4.5, 4.6, 4.7]
    assert _train(tmp_path, root, tmp_path / "a", "--epochs", "5", "--nonmono", "1") == 0
    records = [json.loads(x) for x in (tmp_path / "a/metrics.jsonl").read_text().splitlines()]
    assert [r["optimizer"] for r in records] == ["sgd"] * 4 + ["asgd"]
    ckpt = torch.load(tmp_path / "a/checkpoint.pt", weights_only=True)
    assert ckpt["state"]["asgd"] is True
    assert any("ax" in s for s in ckpt["optimizer"]["state"].values())

    fakes[:] = [5.0, 4.0, 4.5, 4.6]
    assert _train(tmp_path, root, tmp_path / "b", "--epochs", "4", "--nonmono", "1") == 0
    fakes[:] = [4.7]
    assert main(["train", "--task", "lm", "--resume", str(tmp_path / "b"), "--epochs", "5",
                 "--quiet"]) == 0
    other = torch.load(tmp_path / "b/checkpoint.pt", weights_only=True)
    assert all(torch.equal(v, other["model"][k]) for k, v in ckpt["model"].items())
    for k, s in ckpt["optimizer"]["state"].items():
        assert torch.equal(s["ax"], other["optimizer"]["state"][k]["ax"])


def test_averaged_weights_swap_in_and_out():
    model = RNNModel(V2, 30, 4, 4)
    params = list(model.parameters())
    opt = train_lm.make_optimizer(params, resolve(LMTrainConfig, {"preset": "quick"}), True,
                                  torch.device("cpu"))
    x = torch.randint(0, 30, (4, 2))
    for _ in range(3):  # torch's ASGD starts averaging at its third step when t0=0
        opt.zero_grad()
        logits, _, _ = model(x, model.init_hidden(2))
        logits.pow(2).mean().backward()
        opt.step()
    current = [p.detach().clone() for p in params]
    with train_lm.averaged_weights(model, opt):
        assert all(torch.equal(p, opt.state[p]["ax"]) for p in params)
        assert any(not torch.equal(p, c) for p, c in zip(params, current))
    assert all(torch.equal(p, c) for p, c in zip(params, current))


def test_non_finite_loss_is_an_actionable_error(tmp_path, capsys):
    root = write_corpus(tmp_path / "ptb", lines=150)
    code = _train(tmp_path, root, tmp_path / "nan", "--lr", "1e30", "--grad-clip", "0",
                  "--epochs", "1")
    assert code == 2
    err = capsys.readouterr().err
    assert "non-finite" in err or "nan" in err or "inf" in err
    assert "--lr" in err


def test_train_lm_rejects_cnn_genotypes_and_bad_options(tmp_path, capsys):
    root = write_corpus(tmp_path / "ptb", lines=150)
    assert main(["train", "--task", "lm", "--genotype", str(tmp_path / "nope.json"),
                 "--data-root", str(root), "--out", str(tmp_path / "x")]) == 2
    assert "does not exist" in capsys.readouterr().err
    geno = tmp_path / "cnn.json"
    GENOTYPES["cnn"]["DARTS_V2"].to_json(geno)
    assert _train(tmp_path, root, tmp_path / "y", "--genotype", str(geno)) == 2
    assert "CNN genotype" in capsys.readouterr().err
    with pytest.raises(NaspError, match="emsize"):
        resolve(LMTrainConfig, {"emsize": 10, "nhid": 12})
    with pytest.raises(NaspError, match="preset"):
        resolve(LMTrainConfig, {"preset": "huge"})


@pytest.mark.parametrize("strategy", ["nasp", "darts"])
def test_lm_search_end_to_end_and_resume(tmp_path, strategy):
    search = pytest.importorskip("nasp.loops.search")

    root = write_corpus(tmp_path / "ptb", lines=150)
    opts = dict(task="lm", strategy=strategy, space="rnn", preset="quick", data="ptb",
                data_root=str(root), emsize=8, nhid=8, batch_size=4, eval_batch_size=4, bptt=5,
                epochs=2, max_steps_per_epoch=3, device="cpu")
    full = search.run_search(resolve(SearchConfig, opts), tmp_path / "full", progress=False)
    assert len(full.genotype.recurrent) == 8
    assert {"train_ppl", "valid_ppl"} <= set(full.metrics[-1])
    Genotype.from_dict(json.loads((tmp_path / "full/genotype.json").read_text()))
    search.run_search(resolve(SearchConfig, {**opts, "epochs": 1}), tmp_path / "half",
                      progress=False)
    resumed = search.run_search(resolve(SearchConfig, opts), tmp_path / "half", resume=True,
                                progress=False)
    strip = ("epoch_time", "wall_time", "peak_mem_mb", "time_arch", "time_forward",
             "time_backward")
    assert [{k: v for k, v in r.items() if k not in strip} for r in resumed.metrics] == \
        [{k: v for k, v in r.items() if k not in strip} for r in full.metrics]
    assert resumed.genotype.to_dict() == full.genotype.to_dict()
