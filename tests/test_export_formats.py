"""``nasp export``: ONNX, torch.export and safetensors round trips, each checked against
PyTorch's outputs; the safetensors writer against the format and the reference reader."""

from __future__ import annotations

import builtins
import json
import struct

import pytest
import torch

import nasp
from nasp.cli import main
from nasp.configs import TrainConfig
from nasp.configs import resolve as resolve_config
from nasp.errors import NaspError
from nasp.export import export_run
from nasp.export.formats import ATOL, check_batch, compare
from nasp.export.safetensors import read_safetensors, write_safetensors
from nasp.loops.train_cnn import train
from test_eval_train import synthetic
from test_rnn_data import write_corpus
from test_rnn_train import TINY as LM_TINY

TINY = dict(channels=4, layers=3, batch_size=16, eval_batch_size=64, max_steps_per_epoch=2,
            log_every=2, device="cpu", epochs=1, genotype="NASP_12")


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("export") / "run"
    train(resolve_config(TrainConfig, {**TINY, "out": str(out)}), progress=False, log=False,
          dataset=synthetic())
    return out


@pytest.fixture(scope="module")
def lm_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("lm")
    root = write_corpus(base / "ptb", lines=120)
    assert main(["train", "--task", "lm", "--genotype", "DARTS_V1", "--data", "ptb",
                 "--data-root", str(root), "--preset", "quick", "--out", str(base / "run"),
                 *LM_TINY, "--epochs", "1"]) == 0
    return base / "run"


def _batch(n=5, seed=7):
    return torch.randn(n, 1, 12, 12, generator=torch.Generator().manual_seed(seed))


def _reference(run_dir, x):
    with torch.no_grad():
        return nasp.load(run_dir).model(x)


def test_pt2_round_trip_with_a_dynamic_batch(run, tmp_path):
    res = export_run(run, tmp_path / "net.pt2")
    assert res.format == "pt2" and res.max_abs_diff <= ATOL
    program = torch.export.load(str(tmp_path / "net.pt2"))
    for n in (1, 5):  # neither is the traced batch (2)
        x = _batch(n)
        assert torch.allclose(program.module()(x), _reference(run, x), atol=1e-5)
    extra = {"nasp.json": ""}
    torch.export.load(str(tmp_path / "net.pt2"), extra_files=extra)
    assert json.loads(extra["nasp.json"])["genotype"]["normal"][0] == ["conv_1x3_3x1", 0]


def test_onnx_round_trip_with_a_dynamic_batch(run, tmp_path):
    onnx = pytest.importorskip("onnx", reason="ONNX export needs the optional onnx package")
    res = export_run(run, tmp_path / "net.onnx")
    assert res.max_abs_diff <= ATOL
    model = onnx.load(str(tmp_path / "net.onnx"))
    meta = {p.key: p.value for p in model.metadata_props}
    assert json.loads(meta["nasp"])["input_shape"] == [1, 12, 12]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime (optional) is not installed")
    session = ort.InferenceSession(str(tmp_path / "net.onnx"), providers=["CPUExecutionProvider"])
    for n in (1, 5):
        x = _batch(n)
        out = torch.from_numpy(session.run(None, {"images": x.numpy()})[0])
        assert torch.allclose(out, _reference(run, x), atol=1e-5)


def test_onnx_check_falls_back_to_the_reference_evaluator(run, tmp_path, monkeypatch):
    pytest.importorskip("onnx", reason="ONNX export needs the optional onnx package")
    real_import = builtins.__import__

    def no_onnxruntime(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnxruntime)
    res = export_run(run, tmp_path / "net.onnx")
    assert "reference evaluator" in res.checked_with and res.max_abs_diff <= ATOL


def test_onnx_without_the_onnx_package_is_a_clear_error(run, tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_onnx(name, *args, **kwargs):
        if name == "onnx":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    with pytest.raises(NaspError, match="needs the onnx package"):
        export_run(run, tmp_path / "net.onnx")


def test_safetensors_round_trip_cnn(run, tmp_path):
    res = export_run(run, tmp_path / "w.safetensors")
    assert [p.name for p in res.files] == ["w.safetensors", "w.json"]
    meta = json.loads((tmp_path / "w.json").read_text())
    assert meta["genotype"] == nasp.load(run).record["genotype"]
    assert meta["channels"] == 4 and meta["layers"] == 3 and len(meta["mean"]) == 1
    tensors, _ = read_safetensors(tmp_path / "w.safetensors")
    state = nasp.load(run).model.state_dict()
    assert tensors.keys() == state.keys()
    assert all(torch.equal(tensors[k], state[k]) for k in state)
    reloaded = nasp.load(tmp_path / "w.json")
    x = _batch()
    with torch.no_grad():
        assert torch.equal(reloaded.model(x), _reference(run, x))
    assert reloaded.preprocess == nasp.load(run).preprocess
    st = pytest.importorskip("safetensors.torch", reason="safetensors (optional) not installed")
    theirs = st.load_file(str(tmp_path / "w.safetensors"))
    assert all(torch.equal(theirs[k], state[k]) for k in state)


def test_safetensors_round_trip_language_model(lm_run, tmp_path):
    export_run(lm_run, tmp_path / "lm.safetensors")
    meta = json.loads((tmp_path / "lm.json").read_text())
    assert meta["tied"] == {"decoder.weight": "encoder.weight"}  # the shared matrix once
    assert meta["vocab"][:2] == ["w0", "w1"] and meta["task"] == "lm"
    reloaded, original = nasp.load(tmp_path / "lm.safetensors"), nasp.load(lm_run)
    assert reloaded.model.decoder.weight is reloaded.model.encoder.weight
    ids = original.preprocess.encode("w3 w4 w5")
    with torch.no_grad():
        a = reloaded.model(ids, reloaded.model.init_hidden(1))[0]
        b = original.model(ids, original.model.init_hidden(1))[0]
    assert torch.equal(a, b)
    st = pytest.importorskip("safetensors.torch", reason="safetensors (optional) not installed")
    assert torch.equal(st.load_file(str(tmp_path / "lm.safetensors"))["encoder.weight"],
                       original.model.encoder.weight)
    with pytest.raises(NaspError, match="safetensors only"):
        export_run(lm_run, tmp_path / "lm.onnx")


def test_safetensors_writer_follows_the_format(tmp_path):
    tensors = {"f32": torch.randn(3, 4), "bf16": torch.randn(5).to(torch.bfloat16),
               "i64_scalar": torch.tensor(7), "mask": torch.tensor([True, False, True]),
               "empty": torch.zeros(0, 3), "u8": torch.arange(6, dtype=torch.uint8).view(2, 3),
               "strided": torch.arange(12.0).view(3, 4).t()}
    path = tmp_path / "t.safetensors"
    for note in ("x" * i for i in range(8, 0, -1)):  # headers of 8 consecutive lengths
        write_safetensors(path, tensors, {"format": "pt", "note": note})
        raw = path.read_bytes()
        (n,) = struct.unpack("<Q", raw[:8])
        assert n % 8 == 0  # header padded so the data section starts aligned
    header = json.loads(raw[8:8 + n])
    spans = sorted(v["data_offsets"] for k, v in header.items() if k != "__metadata__")
    assert spans[0][0] == 0 and spans[-1][1] == len(raw) - 8 - n  # no gap at either end
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # nor between tensors
    assert header["bf16"]["dtype"] == "BF16" and header["i64_scalar"]["shape"] == []
    back, meta = read_safetensors(path)
    assert meta == {"format": "pt", "note": "x"}
    for k, t in tensors.items():
        assert back[k].dtype == t.dtype and torch.equal(back[k], t), k
    st = pytest.importorskip("safetensors.torch", reason="safetensors (optional) not installed")
    theirs = st.load_file(str(path))
    for k, t in tensors.items():
        assert torch.equal(theirs[k], t), k
    # and files written by the reference implementation read back with ours
    st.save_file({"a": torch.randn(2, 2), "b": torch.ones(3, dtype=torch.int32)},
                 str(tmp_path / "ref.safetensors"), metadata={"k": "v"})
    ours, meta = read_safetensors(tmp_path / "ref.safetensors")
    assert ours["b"].tolist() == [1, 1, 1] and meta == {"k": "v"}


def test_damaged_safetensors_file_is_a_nasp_error(tmp_path):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(struct.pack("<Q", 10**12) + b"{}")
    with pytest.raises(NaspError, match="not a valid safetensors file"):
        read_safetensors(path)


def test_outputs_outside_the_tolerance_fail_the_export(tmp_path):
    ref = torch.tensor([[1.0, -2.0]])
    assert compare(ref, ref + 1e-5, "x", tmp_path) == pytest.approx(1e-5, rel=1e-2)
    with pytest.raises(NaspError, match="differs from PyTorch's"):
        compare(ref, ref + torch.tensor([[0.0, 1e-3]]), "x", tmp_path)
    with pytest.raises(NaspError, match="shape"):
        compare(ref, ref.view(2, 1), "x", tmp_path)


def test_check_batch_is_seeded_and_differs_from_the_traced_batch(run):
    record = nasp.load(run).record
    assert torch.equal(check_batch(record), check_batch(record))
    assert check_batch(record).shape == (3, 1, 12, 12)


def test_cli_export(run, tmp_path, capsys):
    assert main(["export", str(run), "-o", str(tmp_path / "a.pt2")]) == 0
    assert "checked with torch.export.load" in capsys.readouterr().out
    assert main(["export", str(run), "-o", str(tmp_path / "a.bin")]) == 2
    assert "cannot tell the format" in capsys.readouterr().err
    assert main(["export", str(run), "--last", "--format", "safetensors", "-o",
                 str(tmp_path / "a.bin")]) == 0
    assert json.loads((tmp_path / "a.json").read_text())["weights"] == "a.bin"
    assert main(["export", str(tmp_path), "-o", str(tmp_path / "b.pt2")]) == 2
    assert "holds no trained weights" in capsys.readouterr().err
