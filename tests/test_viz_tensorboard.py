"""TensorBoard files from run records: scalars per epoch, architecture per edge and op, and one
clear error without the tensorboard package."""

from __future__ import annotations

import sys

import pytest

from nasp.errors import NaspError
from nasp.tensorboard import TensorBoardLogger, scalar_tag, write_run_tensorboard
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
