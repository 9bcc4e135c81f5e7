"""ImageNet16-120 and the NATS-Bench topology archive, on small files written in their formats."""

from __future__ import annotations

import bz2
import os
import pickle
from collections import OrderedDict
from pathlib import Path

import numpy as np
import pytest

from nasp.data import load_image_dataset
from nasp.errors import NaspError
from nasp.nb201 import index_of
from nasp.nb201.archive import archive_path, load_archive_file, read_cell

ALL_SKIP = ("|skip_connect~0|+|skip_connect~0|skip_connect~1|"
            "+|skip_connect~0|skip_connect~1|skip_connect~2|")


class _Exploit:
    def __reduce__(self):  # would run os.system on an unrestricted unpickler
        return (os.system, ("echo pwned > /dev/null",))


# ---------------------------------------------------------------- ImageNet16-120


def write_batch(path: Path, data: np.ndarray, labels, str_keys: bool = True, **extra) -> None:
    obj = {"data": data, "labels": labels, **extra}
    if not str_keys:  # files pickled by Python 2 have byte-string keys
        obj = {k.encode(): v for k, v in obj.items()}
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=2)


def make_imagenet16(root: Path, per_file: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """The 11 files, labels 1..130 (10 outside the first 120); returns the rows and labels of
    every training image, in file order."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    rows, labels = [], []
    for i in range(1, 11):
        x = rng.integers(0, 256, (per_file, 768), dtype=np.uint8)
        y = [int(v) for v in rng.integers(1, 131, per_file)]
        y[0] = 120 + (i % 2) * 5  # class 120 (kept) and 125 (dropped) on alternate files
        write_batch(root / f"train_data_batch_{i}", x, y, str_keys=i % 2 == 0,
                    mean=np.zeros(768))
        rows.append(x)
        labels += y
    val = rng.integers(0, 256, (5, 768), dtype=np.uint8)
    write_batch(root / "val_data", val, np.array([1, 121, 60, 120, 1000]))
    return np.concatenate(rows), np.array(labels)


def test_imagenet16_keeps_the_first_120_classes(tmp_path: Path) -> None:
    rows, labels = make_imagenet16(tmp_path / "ImageNet16")
    ds = load_image_dataset("imagenet16-120", tmp_path)  # the parent folder is found too
    keep = labels <= 120
    assert ds.shape == (3, 16, 16) and ds.num_classes == 120
    assert ds.train_y.tolist() == (labels[keep] - 1).tolist()
    np.testing.assert_array_equal(ds.train_x.numpy(), rows[keep].reshape(-1, 3, 16, 16))
    assert ds.test_y.tolist() == [0, 59, 119]
    assert ds.train_y.max() == 119 and ds.hflip


def test_imagenet16_errors_name_the_file(tmp_path: Path) -> None:
    make_imagenet16(tmp_path)
    path = tmp_path / "train_data_batch_3"
    write_batch(path, np.zeros((2, 3072), np.uint8), [1, 2])
    with pytest.raises(NaspError, match="768") as e:
        load_image_dataset("imagenet16-120", tmp_path)
    assert str(path) in str(e.value)
    write_batch(path, np.zeros((2, 768), np.uint8), [0, 2])
    with pytest.raises(NaspError, match="1-based labels"):
        load_image_dataset("imagenet16-120", tmp_path)
    write_batch(path, np.zeros((2, 768), np.uint8), [1])
    with pytest.raises(NaspError, match="one integer label per image"):
        load_image_dataset("imagenet16-120", tmp_path)
    write_batch(path, [_Exploit()], [1])
    with pytest.raises(NaspError, match="refusing"):
        load_image_dataset("imagenet16-120", tmp_path)
    path.unlink()
    with pytest.raises(NaspError, match="train_data_batch_3 not found"):
        load_image_dataset("imagenet16-120", tmp_path)
    with pytest.raises(NaspError, match="--data-root"):
        load_image_dataset("imagenet16-120", None)


# ---------------------------------------------------------------- NATS-Bench archive


def run_record(dataset: str, seed: int, epochs: int, splits: tuple[str, ...], base: float):
    """One training run as the NATS-Bench API stores it (ResultsCount's fields)."""
    evals = OrderedDict()
    for s, split in enumerate(splits):
        for e in range(epochs):
            evals[f"{split}@{e}"] = np.float64(base + s + e + seed / 10)
    return {"name": dataset, "net_state_dict": None, "seed": seed, "epochs": epochs,
            "train_acc1es": OrderedDict((e, base - 1 + e) for e in range(epochs)),
            "train_losses": OrderedDict((e, 1.0) for e in range(epochs)),
            "eval_names": list(splits), "eval_acc1es": evals, "eval_losses": {},
            "eval_times": {}, "params": 0.1, "flop": 10.0, "latency": [0.01],
            "arch_config": {"arch_str": ALL_SKIP}}


def arch_results(index: int, arch: str, epochs: int) -> dict:
    layout = {"cifar10-valid": ("x-valid", "ori-test"), "cifar10": ("ori-test",),
              "cifar100": ("x-valid", "x-test", "ori-test"),
              "ImageNet16-120": ("x-valid", "x-test", "ori-test")}
    runs, seeds = {}, {}
    for d, (dataset, splits) in enumerate(layout.items()):
        seeds[dataset] = [777, 888]
        for seed in seeds[dataset]:
            runs[(dataset, seed)] = run_record(dataset, seed, epochs, splits, 10.0 * (d + 1))
    return {"arch_index": index, "arch_str": arch, "all_results": runs,
            "dataset_seed": seeds, "clear_net_done": True}


def write_archive(folder: Path, arch: str, padded: bool = True, obj=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    index = index_of(arch)
    path = folder / (f"{index:06d}.pickle.pbz2" if padded else f"{index}.pickle.pbz2")
    if obj is None:
        obj = {"12": arch_results(index, arch, 12), "200": arch_results(index, arch, 200)}
    with bz2.open(path, "wb") as f:
        pickle.dump(obj, f, protocol=4)
    return path


@pytest.mark.parametrize("padded", [True, False])
def test_archive_gives_validation_and_12_epoch_figures(tmp_path: Path, padded: bool) -> None:
    write_archive(tmp_path, ALL_SKIP, padded=padded)
    cell = read_cell(tmp_path, ALL_SKIP)
    assert cell.index == index_of(ALL_SKIP) and cell.arch == ALL_SKIP
    assert cell.hps == ("12", "200")
    # mean over the two seeds (777, 888): base + split position + epoch + seed/10
    assert cell.accuracy("cifar10-valid", "x-valid", hp="12") == pytest.approx(10 + 11 + 83.25)
    assert cell.accuracy("cifar10-valid", "x-valid", hp="200", epoch=3) == pytest.approx(
        10 + 3 + 83.25)
    assert cell.accuracy("cifar10", "train", hp="12") == pytest.approx(20 - 1 + 11)
    fig = cell.figures("200")
    assert fig["cifar10_valid"] == pytest.approx(10 + 199 + 83.25)
    assert fig["cifar10_test"] == pytest.approx(20 + 199 + 83.25)
    assert fig["cifar100_valid"] == pytest.approx(30 + 199 + 83.25)
    assert fig["imagenet16_test"] == pytest.approx(40 + 1 + 199 + 83.25)
    assert set(cell.figures("12")) == set(fig)
    assert read_cell(tmp_path, cell.index).arch == ALL_SKIP  # by index too


def test_archive_refuses_objects_and_wrong_files(tmp_path: Path) -> None:
    path = write_archive(tmp_path, ALL_SKIP, obj={"200": {"all_results": _Exploit(),
                                                          "dataset_seed": {}}})
    with pytest.raises(NaspError, match="refusing to load posix.system|refusing to load os"):
        load_archive_file(path)
    path.write_bytes(b"not bz2")
    with pytest.raises(NaspError, match="cannot read"):
        read_cell(tmp_path, ALL_SKIP)
    write_archive(tmp_path, ALL_SKIP, obj=[1, 2])
    with pytest.raises(NaspError, match="not a NATS-Bench topology record"):
        read_cell(tmp_path, ALL_SKIP)
    other = ALL_SKIP.replace("skip_connect~2", "none~2")
    write_archive(tmp_path, ALL_SKIP, obj={"200": arch_results(0, other, 2)})
    with pytest.raises(NaspError, match="does not number cells"):
        read_cell(tmp_path, ALL_SKIP)
    write_archive(tmp_path, ALL_SKIP, obj={"200": arch_results(0, ALL_SKIP, 2)})
    with pytest.raises(NaspError, match="no 12-epoch results"):
        read_cell(tmp_path, ALL_SKIP).accuracy("cifar10", "ori-test", hp="12")
    with pytest.raises(NaspError, match="no 'x-test' accuracy"):
        read_cell(tmp_path, ALL_SKIP).accuracy("cifar10", "x-test")
    assert archive_path(tmp_path, 5).name == "000005.pickle.pbz2"
    with pytest.raises(NaspError, match="not found"):
        read_cell(tmp_path, 5)
