"""Training a genotype from scratch: config resolution, resume equivalence, CLI, nasp info."""

import dataclasses
import json

import pytest
import torch

from nasp.cli import main
from nasp.configs import TrainConfig
from nasp.configs import resolve as resolve_config
from nasp.configs.train_cnn import PRESETS
from nasp.data import DeviceLoader
from nasp.data.dataset import make_dataset
from nasp.errors import NaspError
from nasp.loops.train_cnn import evaluate, load_model, train
from nasp.run_folder import load_checkpoint


def resolve(options, config_file=None):
    return resolve_config(TrainConfig, options, config_file)


TINY = dict(channels=4, layers=3, batch_size=16, eval_batch_size=64, max_steps_per_epoch=3,
            drop_path_prob=0.3, cutout=4, log_every=2, device="cpu")


def synthetic(n_train=96, n_test=40, classes=4, seed=0):
    """Learnable 1x12x12 images (class = brightest quadrant) so tests need no data files."""
    g = torch.Generator().manual_seed(seed)

    def make(n):
        y = torch.randint(0, classes, (n,), generator=g)
        x = torch.randint(0, 80, (n, 1, 12, 12), generator=g, dtype=torch.uint8)
        for i, c in enumerate(y.tolist()):
            r, q = divmod(c, 2)
            x[i, 0, r * 6:(r + 1) * 6, q * 6:(q + 1) * 6] += 150
        return x, y

    (tx, ty), (vx, vy) = make(n_train), make(n_test)
    return make_dataset("synthetic", tx, ty, vx, vy, [str(c) for c in range(classes)],
                        hflip=True)


def test_resolution_order(tmp_path):
    assert resolve({}).epochs == PRESETS["quick"]["epochs"]
    assert resolve({"preset": "paper"}).layers == 20
    cfg_file = tmp_path / "c.json"
    cfg_file.write_text(json.dumps({"epochs": 7, "lr": 0.5}))
    cfg = resolve({"lr": 0.01, "epochs": None}, cfg_file)
    assert (cfg.epochs, cfg.lr) == (7, 0.01)  # file beats preset, explicit option beats file
    paper = resolve({"preset": "paper"})
    assert (paper.channels, paper.epochs, paper.batch_size, paper.cutout) == (36, 600, 96, 16)
    assert (paper.drop_path_prob, paper.auxiliary_weight, paper.grad_clip) == (0.2, 0.4, 5.0)


def test_paper_preset_on_64px_data_is_the_tiny_imagenet_recipe():
    cfg = resolve({"preset": "paper", "data": "tiny-imagenet"})
    assert cfg.preset == "tiny-imagenet"
    assert (cfg.layers, cfg.channels, cfg.epochs, cfg.lr) == (14, 48, 250, 0.1)
    assert (cfg.lr_schedule, cfg.lr_gamma, cfg.weight_decay, cfg.label_smoothing) == \
        ("step", 0.97, 3e-5, 0.1)
    assert resolve({"preset": "paper", "data": "cifar10"}).preset == "paper"


def test_unknown_or_bad_options_are_nasp_errors(tmp_path):
    with pytest.raises(NaspError, match="unknown option"):
        resolve({"epohcs": 3})
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"learning_rate": 1}))
    with pytest.raises(NaspError, match="learning_rate"):
        resolve({}, bad)
    with pytest.raises(NaspError, match="lr_schedule"):
        resolve({"lr_schedule": "linear"})
    with pytest.raises(NaspError, match="preset"):
        resolve({"preset": "huge"})
    with pytest.raises(NaspError, match="channels"):
        resolve({"channels": 5})


def _cfg(tmp_path, name, **kw):
    return resolve({**TINY, "epochs": 2, "out": str(tmp_path / name), **kw})


class Stop(Exception):
    pass


def _stop_after_first(epoch, record):
    raise Stop


@pytest.mark.parametrize("schedule", ["cosine", "step"])
def test_resume_is_bit_identical(tmp_path, schedule):
    ds = synthetic()
    quiet = dict(progress=False, log=False, dataset=ds)
    straight = train(_cfg(tmp_path, "a", lr_schedule=schedule), **quiet)
    with pytest.raises(Stop):
        train(_cfg(tmp_path, "b", lr_schedule=schedule), on_epoch_end=_stop_after_first, **quiet)
    assert load_checkpoint(tmp_path / "b" / "checkpoint.pt")["epoch"] == 1
    resumed = train(_cfg(tmp_path, "b", lr_schedule=schedule), resume=True, **quiet)
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    assert a["model"].keys() == b["model"].keys()
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(),
                      strict=True):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert straight["test_acc"] == resumed["test_acc"]
    assert straight["test_loss"] == resumed["test_loss"]

    def lines(run):
        recs = [json.loads(s) for s in (tmp_path / run / "metrics.jsonl").read_text().splitlines()]
        return [{k: v for k, v in r.items() if "time" not in k and k != "peak_mem_mb"}
                for r in recs]

    assert lines("a") == lines("b") and len(lines("a")) == 2


def test_training_learns_and_writes_the_run_folder(tmp_path):
    cfg = _cfg(tmp_path, "run", epochs=3, max_steps_per_epoch=None, drop_path_prob=0.0,
               cutout=0, lr=0.1, valid_portion=0.2)
    ds = synthetic(n_train=160, n_test=80)
    result = train(cfg, progress=False, log=False, dataset=ds)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "result.json"):
        assert (run / name).exists(), name
    saved = json.loads((run / "result.json").read_text())
    assert saved.keys() == result.keys() and saved["test_acc"] == result["test_acc"]
    for key in ("test_acc", "test_loss", "best_valid_acc", "params_m", "flops_m", "genotype",
                "epochs", "best_test_acc", "environment"):
        assert key in saved, key
    assert saved["environment"]["device"]["type"] == "cpu"  # where the time was measured
    config = json.loads((run / "config.json").read_text())
    assert config["command"] == "train" and config["task"] == "cnn"
    records = [json.loads(s) for s in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [0, 1, 2]
    for field in ("train_loss", "train_acc", "valid_loss", "valid_acc", "lr", "epoch_time",
                  "wall_time", "peak_mem_mb"):
        assert field in records[0], field
    assert records[-1]["wall_time"] >= records[0]["wall_time"]
    assert records[-1]["train_loss"] < records[0]["train_loss"]
    assert saved["test_acc"] > 0.4  # 4 classes: chance is 0.25
    # the saved best weights rebuild without the data and reproduce the reported accuracy
    test = DeviceLoader(ds.test_x, ds.test_y, 64, mean=ds.mean, std=ds.std, shuffle=False,
                        drop_last=False)
    best = load_model(run, "best")
    assert not best.training
    assert evaluate(best, test, torch.device("cpu"), False)["acc"] == saved["best_test_acc"]
    last = evaluate(load_model(run, "checkpoint"), test, torch.device("cpu"), False)
    assert last["acc"] == saved["test_acc"]


def test_non_finite_loss_is_a_nasp_error(tmp_path):
    ds = dataclasses.replace(synthetic(), std=(0.0,))  # 1/std = inf: every input is inf or nan
    with pytest.raises(NaspError, match="loss became nan at epoch 1"):
        train(_cfg(tmp_path, "nan"), progress=False, log=False, dataset=ds)


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    ds = synthetic()
    cfg = _cfg(tmp_path, "r", epochs=1)
    train(cfg, progress=False, log=False, dataset=ds)
    with pytest.raises(NaspError, match="--resume"):
        train(cfg, progress=False, log=False, dataset=ds)
    train(cfg, progress=False, log=False, dataset=ds, overwrite=True)


def test_cli_train_end_to_end(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["train", "--genotype", "DARTS_V1", "--out", str(out), "--epochs", "1",
            "--channels", "4", "--layers", "3", "--max-train-samples", "200",
            "--batch-size", "32", "--max-steps-per-epoch", "2", "--quiet",
            "--device", "cpu"]
    assert main(argv) == 0
    result = json.loads((out / "result.json").read_text())
    assert 0.0 <= result["test_acc"] <= 1.0 and result["epochs"] == 1
    assert result["genotype"]["normal"][0] == ["sep_conv_3x3", 1]
    for name in ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt"):
        assert (out / name).exists()
    # resuming a finished run only re-tests it; changing options on resume is refused
    assert main(["train", "--resume", str(out), "--quiet"]) == 0
    assert main(["train", "--resume", str(out), "--epochs", "3"]) == 2
    assert "cannot change when resuming" in capsys.readouterr().err
    assert main(["train", "--out", str(out / "other"), "--genotype", "NOPE"]) == 2
    assert "unknown genotype 'NOPE'" in capsys.readouterr().err


def test_cli_train_reads_a_config_file_and_rejects_unknown_keys(tmp_path, capsys):
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"epochs": 1, "layerz": 3}))
    assert main(["train", "--config", str(cfg), "--out", str(tmp_path / "x")]) == 2
    assert "unknown option 'layerz'" in capsys.readouterr().err


def test_info_prints_params_and_flops(capsys):
    assert main(["info", "--genotype", "DARTS_V2"]) == 0
    out = capsys.readouterr().out
    assert "parameters: 3.349 M" in out and "multiply-adds: 528.4 M" in out
    assert main(["info", "--genotype", "DARTS_V2", "--data", "fashion-mnist-sample",
                 "--layers", "8", "--channels", "16"]) == 0
    out = capsys.readouterr().out
    assert "1x28x28" in out and "parameters:" in out


def test_info_for_a_genotype_file_and_language_models(tmp_path, capsys):
    from nasp.genotype import GENOTYPES

    path = tmp_path / "genotype.json"
    GENOTYPES["cnn"]["NASP_12"].to_json(path)
    assert main(["info", "--genotype", str(tmp_path)]) == 0
    assert "parameters: 7.363 M" in capsys.readouterr().out
    assert main(["info", "--genotype", "DARTS_V2", "--task", "lm"]) == 0
    assert "parameters: 22.960 M" in capsys.readouterr().out


def test_config_dataclass_defaults_are_the_paper_recipe():
    d, p = TrainConfig(), PRESETS["paper"]
    assert all(getattr(d, k) == v for k, v in p.items())
