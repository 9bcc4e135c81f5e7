"""TensorBoard files from run records: scalars per epoch, architecture per edge and op, and one
clear error without the tensorboard package."""

from __future__ import annotations

import json
import sys

import pytest

from nasp.errors import NaspError
from nasp.tensorboard import TensorBoardLogger, edge_name, scalar_tag, write_run_tensorboard
from nasp.viz.runs import load_run
from synthetic import write_search_run


def read_scalars(log_dir) -> dict[str, list[tuple[int, float]]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    return {tag: [(e.step, e.value) for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_scalar_tags_group_related_curves():
    assert scalar_tag("train_loss") == "loss/train" and scalar_tag("valid_acc") == "accuracy/valid"
    assert scalar_tag("valid_ppl") == "perplexity/valid" and scalar_tag("lr") == "lr/lr"
    assert scalar_tag("time_arch") == "time/arch" and scalar_tag("peak_mem_mb") == "memory/peak_mb"
    assert scalar_tag("asap_temperature") == "other/asap_temperature"


def test_epoch_records_become_scalars_per_epoch_and_per_edge_and_op(tmp_path):
    pytest.importorskip("tensorboard")
    run = load_run(write_search_run(tmp_path / "run", strategy="darts", epochs=2))
    with TensorBoardLogger(run.path) as tb:
        tb.log_epoch(arch=run.arch[0])  # the initial architecture, epoch -1
        for metrics, arch in zip(run.metrics, run.arch[1:], strict=True):
            tb.log_epoch(metrics, arch)
    scalars = read_scalars(run.path / "tb")
    assert scalars["accuracy/valid"] == [
        (m["epoch"] + 1, pytest.approx(m["valid_acc"])) for m in run.metrics]
    for tag in ("loss/train", "loss/valid", "lr/lr", "time/arch", "time/forward",
                "time/backward", "time/wall", "memory/peak_mb"):
        assert [step for step, _ in scalars[tag]] == [1, 2], tag
    normal = run.arch[-1]["cells"]["normal"]
    e, k = 4, 2  # edge 4 is node 1 <- node 0
    tag = f"arch/normal/softmax/e04 node 1 ← node 0/{normal['ops'][k]}"
    assert scalars[tag] == [(r["epoch"] + 1, pytest.approx(r["cells"]["normal"]["weights"]
                                                          ["softmax"][e][k])) for r in run.arch]
    n_edges, n_ops = len(normal["edges"]), len(normal["ops"])
    arch_tags = [t for t in scalars if t.startswith("arch/")]
    assert len(arch_tags) == 2 * 2 * n_edges * n_ops  # 2 cells x (alpha, softmax)


def test_a_whole_run_folder_can_be_written_afterwards(tmp_path):
    pytest.importorskip("tensorboard")
    folder = write_search_run(tmp_path / "run", strategy="nasp", epochs=2, task="lm")
    tb = write_run_tensorboard(folder)
    scalars = read_scalars(tb)
    assert [s for s, _ in scalars["perplexity/valid"]] == [1, 2]
    assert "arch/recurrent/A_bar/e00 node 1 ← node 0/tanh" in scalars
    with pytest.raises(NaspError, match="already holds"):
        write_run_tensorboard(folder)


def test_without_the_package_it_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorboard", None)  # makes the import fail
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    with pytest.raises(NaspError, match="tensorboard") as err:
        TensorBoardLogger(tmp_path)
    assert "pip install" in err.value.hint
    assert not (tmp_path / "tb").exists()


def test_a_resumed_run_replaces_the_epochs_it_repeats(tmp_path):
    pytest.importorskip("tensorboard")
    with TensorBoardLogger(tmp_path, purge_step=0) as tb:
        for epoch in range(3):  # the interrupted process got to epoch 2...
            tb.log_epoch({"epoch": epoch, "valid_acc": 0.1 * epoch})
    with TensorBoardLogger(tmp_path, purge_step=2) as tb:  # ...its checkpoint had 1 epoch
        for epoch in (1, 2):
            tb.log_epoch({"epoch": epoch, "valid_acc": 0.5 + epoch})
    steps = read_scalars(tmp_path / "tb")["accuracy/valid"]
    assert steps == [(1, 0.0), (2, pytest.approx(1.5)), (3, pytest.approx(2.5))]


def _records(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_nasp_search_and_train_with_tensorboard_write_every_tag(tmp_path):
    """End to end: `nasp search --tensorboard` writes RUN/tb with the losses, accuracies, lr,
    phase times, memory and every architecture parameter of the run's own records;
    `nasp train --tensorboard` (CNN and language model) every field of its metrics.jsonl."""
    pytest.importorskip("tensorboard", reason="needs the tensorboard package "
                        "(pip install 'nasp[tensorboard]')")
    from nasp.cli import main
    from test_rnn_data import write_corpus

    run = tmp_path / "search"
    assert main(["search", "--tensorboard", "--out", str(run), "--epochs", "1",
                 "--max-train-samples", "256", "--channels", "4", "--layers", "3",
                 "--batch-size", "32", "--quiet", "--device", "cpu",
                 "--max-steps-per-epoch", "1"]) == 0
    scalars = read_scalars(run / "tb")
    (metrics,) = _records(run / "metrics.jsonl")
    for tag, key in [("loss/train", "train_loss"), ("loss/valid", "valid_loss"),
                     ("accuracy/train", "train_acc"), ("accuracy/valid", "valid_acc"),
                     ("lr/lr", "lr"), ("time/arch", "time_arch"),
                     ("time/forward", "time_forward"), ("time/backward", "time_backward"),
                     ("time/epoch", "epoch_time"), ("time/wall", "wall_time"),
                     ("memory/peak_mb", "peak_mem_mb")]:
        assert scalars[tag] == [(1, pytest.approx(metrics[key]))], tag
    arch = _records(run / "arch.jsonl")  # the initial architecture (step 0) and epoch 0
    expected = {}
    for step, record in enumerate(arch):
        for cell, data in record["cells"].items():
            inputs = sum(1 for node, _ in data["edges"] if node == 0)
            for matrix, rows in data["weights"].items():
                for e, (node, j) in enumerate(data["edges"]):
                    for op, value in zip(data["ops"], rows[e], strict=True):
                        tag = f"arch/{cell}/{matrix}/{edge_name(cell, e, node, j, inputs)}/{op}"
                        expected.setdefault(tag, []).append((step, pytest.approx(value)))
    assert {"arch/normal/A/e00 node 0 ← c_{k-2}/skip_connect",
            "arch/reduce/A_bar/e13 node 3 ← node 2/sep_conv_3x3"} <= set(expected)
    assert {t: v for t, v in scalars.items() if t.startswith("arch/")} == expected

    cnn, lm = tmp_path / "train-cnn", tmp_path / "train-lm"
    assert main(["train", "--tensorboard", "--out", str(cnn), "--epochs", "1",
                 "--max-train-samples", "256", "--channels", "4", "--layers", "3",
                 "--batch-size", "32", "--quiet", "--device", "cpu",
                 "--max-steps-per-epoch", "1"]) == 0
    assert main(["train", "--task", "lm", "--tensorboard", "--genotype", "DARTS_V2",
                 "--data", "ptb", "--data-root", str(write_corpus(tmp_path / "ptb", lines=150)),
                 "--out", str(lm), "--epochs", "1", "--emsize", "8", "--nhid", "8",
                 "--batch-size", "4", "--eval-batch-size", "4", "--test-batch-size", "4",
                 "--bptt", "6", "--max-steps-per-epoch", "4", "--quiet",
                 "--device", "cpu"]) == 0
    for run, tags in ((cnn, ("loss/train", "accuracy/valid")), (lm, ("perplexity/valid",))):
        scalars = read_scalars(run / "tb")
        (metrics,) = _records(run / "metrics.jsonl")
        for tag in (*tags, "lr/lr", "time/epoch", "memory/peak_mb"):
            assert [step for step, _ in scalars[tag]] == [1], (run.name, tag)
        assert scalars == {
            scalar_tag(k): [(1, pytest.approx(v))] for k, v in metrics.items()
            if k != "epoch" and isinstance(v, int | float) and not isinstance(v, bool)}
