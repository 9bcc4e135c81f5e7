"""``nasp.load``: a train run's network and preprocessing, and weights_only checkpoints."""

from __future__ import annotations

import io

import pytest
import torch

import nasp
from nasp.cli import main
from nasp.configs import TrainConfig
from nasp.configs import resolve as resolve_config
from nasp.data import DeviceLoader
from nasp.errors import NaspError
from nasp.export.load import ImagePreprocessing, Vocabulary, _averaged
from nasp.genotype import GENOTYPES
from nasp.loops import train_cnn, train_lm
from nasp.models.rnn import RNNModel
from nasp.run_folder import write_json
from test_eval_train import synthetic
from test_rnn_data import write_corpus
from test_rnn_train import TINY as LM_TINY

CNN_TINY = dict(channels=4, layers=3, batch_size=16, eval_batch_size=64, max_steps_per_epoch=3,
                drop_path_prob=0.0, cutout=0, log_every=2, device="cpu", epochs=2)


def _capture(monkeypatch, module, name):
    """Keep the network a train loop builds, to compare with what nasp.load rebuilds."""
    built = []
    real = getattr(module, name)

    def build(*args, **kwargs):
        built.append(real(*args, **kwargs))
        return built[-1]

    monkeypatch.setattr(module, name, build)
    return built


@pytest.fixture(scope="module")
def cnn_run(tmp_path_factory):
    """A finished tiny CNN run (valid_portion 0.2: the loop ends holding best.pt's weights)
    and the network object the loop trained."""
    mp = pytest.MonkeyPatch()
    built = _capture(mp, train_cnn, "build_eval_model")
    out = tmp_path_factory.mktemp("cnn") / "run"
    ds = synthetic()
    cfg = resolve_config(TrainConfig, {**CNN_TINY, "valid_portion": 0.2, "out": str(out)})
    train_cnn.train(cfg, progress=False, log=False, dataset=ds)
    mp.undo()
    return out, ds, built[0].eval()


def test_load_gives_the_training_runs_logits_on_raw_images(cnn_run):
    out, ds, trained = cnn_run
    run = nasp.load(out)
    assert run.task == "cnn" and not run.model.training
    assert run.checkpoint.name == "best.pt" and run.epoch in (0, 1)
    pre = run.preprocess
    assert pre.channels == 1 and pre.size == (12, 12) and pre.classes == tuple(ds.classes)
    assert pre.mean == pytest.approx(ds.mean) and pre.std == pytest.approx(ds.std)
    # the training loop's own input pipeline and network, on the test images
    loader = DeviceLoader(ds.test_x, ds.test_y, 64, mean=ds.mean, std=ds.std, shuffle=False,
                          drop_last=False)
    x, _ = next(iter(loader.epoch(0)))
    with torch.no_grad():
        expected = trained(x)
    raw = ds.test_x[: len(x)]  # uint8, 0..255, exactly what a user holds
    got = run.predict(raw)
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-5)
    assert torch.equal(got.argmax(1), expected.argmax(1))
    assert torch.allclose(run.model(run.preprocess(raw.float() / 255)), expected, atol=1e-5)


def test_load_last_takes_checkpoint_pt(cnn_run):
    out, _, _ = cnn_run
    best, last = nasp.load(out), nasp.load(out, last=True)
    assert last.checkpoint.name == "checkpoint.pt" and last.epoch == 1
    sd = torch.load(out / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(v, sd[k]) for k, v in last.model.state_dict().items())
    assert best.genotype == last.genotype


def test_preprocessing_accepts_the_layouts_users_hold():
    pre = ImagePreprocessing(3, (4, 5), (0.5, 0.25, 0.0), (0.5, 0.25, 1.0), ("a", "b"))
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (2, 3, 4, 5), generator=g, dtype=torch.uint8)
    expected = (x.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / \
        torch.tensor([0.5, 0.25, 1.0]).view(1, 3, 1, 1)
    assert torch.allclose(pre(x), expected)
    assert torch.allclose(pre(x.permute(0, 2, 3, 1).numpy()), expected)  # numpy NHWC
    assert torch.allclose(pre(x[0]), expected[:1])  # one CHW image
    assert torch.allclose(pre(x[0].permute(1, 2, 0).numpy()), expected[:1])  # one HWC image
    assert torch.allclose(pre(x.float() / 255), expected, atol=1e-6)  # floats in [0, 1]
    with pytest.raises(NaspError, match="trained on 4x5 images"):
        pre(torch.zeros(1, 3, 8, 8, dtype=torch.uint8))
    with pytest.raises(NaspError, match="3-channel"):
        pre(torch.zeros(1, 1, 4, 5, dtype=torch.uint8))
    gray = ImagePreprocessing(1, (4, 5), (0.0,), (1.0,), ("a",))
    batch = x[:, 0]  # (N, H, W), as MNIST-like arrays come
    for layout in (batch, batch[:, None], batch[..., None], batch[0], batch[0, ..., None]):
        n = 1 if layout.dim() == 2 or layout.shape[0] != 2 else 2
        assert torch.allclose(gray(layout), batch[:n, None].float() / 255), tuple(layout.shape)
    pil = pytest.importorskip("PIL.Image")
    img = pil.fromarray(x[0, 0].numpy(), mode="L")
    assert torch.allclose(gray(img), x[:1, :1].float() / 255)


def test_vocabulary_encodes_like_the_corpus_reader():
    vocab = Vocabulary(("<unk>", "a", "b", "<eos>"))
    assert vocab.encode("a b\nb zz").view(-1).tolist() == [1, 2, 3, 2, 0, 3]
    assert vocab.decode(torch.tensor([1, 2, 3])) == ["a", "b", "<eos>"]
    with pytest.raises(NaspError, match="not in the vocabulary"):
        Vocabulary(("a", "<eos>")).encode("b")


def test_lm_load_gives_the_training_runs_logits(tmp_path, monkeypatch):
    built = _capture(monkeypatch, train_lm, "RNNModel")
    root = write_corpus(tmp_path / "ptb", lines=150)
    assert main(["train", "--task", "lm", "--genotype", "DARTS_V2", "--data", "ptb",
                 "--data-root", str(root), "--preset", "quick", "--out", str(tmp_path / "lm"),
                 *LM_TINY, "--epochs", "1"]) == 0
    trained = built[0].eval()  # the loop ends holding best.pt's weights
    run = nasp.load(tmp_path / "lm")
    assert run.task == "lm" and not run.model.training
    from nasp.data.text import load_corpus

    corpus = load_corpus("ptb", str(root))
    assert list(run.preprocess.words) == corpus.vocab
    ids = run.preprocess.encode("w1 w2 w3\nw4 N")
    with torch.no_grad():
        got = run.model(ids, run.model.init_hidden(1))[0]
        expected = trained(ids, trained.init_hidden(1))[0]
    assert got.shape == (7, 1, corpus.ntokens)
    assert torch.equal(got, expected)
    assert run.record["emsize"] == 8 and run.record["dropoutx"] == pytest.approx(0.3)


def test_last_weights_of_an_asgd_language_model_are_the_averages():
    model = RNNModel(GENOTYPES["lm"]["DARTS_V2"], 12, 4, 4)
    params = [p for p in model.parameters() if p.requires_grad]
    state = {"state": {"asgd": True},
             "optimizer": {"state": {i: {"ax": torch.full_like(p, float(i))}
                                     for i, p in enumerate(params)}}}
    _averaged(model, state)
    assert all(torch.equal(p, torch.full_like(p, float(i))) for i, p in enumerate(params))
    assert torch.equal(model.decoder.weight, model.encoder.weight)  # still tied
    state["state"]["asgd"] = False  # plain SGD: the raw weights stay
    before = [p.clone() for p in params]
    state["optimizer"]["state"] = {i: {"ax": torch.zeros_like(p)} for i, p in enumerate(params)}
    _averaged(model, state)
    assert all(torch.equal(a, b) for a, b in zip(before, params))


def test_runs_without_trained_weights_are_one_clear_error(tmp_path):
    with pytest.raises(NaspError, match="does not exist"):
        nasp.load(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NaspError, match="holds no trained weights"):
        nasp.load(tmp_path / "empty")
    (tmp_path / "search").mkdir()
    write_json(tmp_path / "search" / "config.json", {"command": "search"})
    with pytest.raises(NaspError, match="search run"):
        nasp.load(tmp_path / "search")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "best.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(NaspError, match="cannot be read"):
        nasp.load(tmp_path / "bad")


def _weights_only(obj) -> None:
    buf = io.BytesIO()
    torch.save(obj, buf)
    buf.seek(0)
    torch.load(buf, weights_only=True)


def test_train_checkpoints_load_with_weights_only(cnn_run, tmp_path):
    out, _, _ = cnn_run
    torch.load(out / "best.pt", weights_only=True)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)  # random states included
    _weights_only(ckpt)


def test_nasp_load_is_exposed_lazily():
    from nasp.export.load import load

    assert nasp.load is load
    assert "load" in nasp.__all__
