"""Image dataset loaders, on small files written in the real on-disk formats."""

from __future__ import annotations

import gzip
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import nasp.data.folder as folder_mod
import nasp.data.idx as idx_mod
import nasp.data.tiny_imagenet as tiny_mod
from nasp.data import IMAGE_DATASETS, ImageDataset, load_image_dataset
from nasp.data.dataset import channel_stats
from nasp.errors import NaspError

# ---------------------------------------------------------------- writers for the real formats


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    """An IDX file of unsigned bytes; gzipped when the name ends in .gz."""
    magic = (0x08 << 8) | array.ndim if magic is None else magic
    data = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(data) if path.suffix == ".gz" else data)
    return path


def make_idx_folder(root: Path, n_train: int = 12, n_test: int = 5, gz: bool = True,
                    size: tuple[int, int] = (5, 4)) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    arrays = {"train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *size)),
              "train-labels-idx1-ubyte": np.arange(n_train) % 10,
              "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *size)),
              "t10k-labels-idx1-ubyte": (np.arange(n_test) * 3) % 10}
    root.mkdir(parents=True, exist_ok=True)
    for i, (name, a) in enumerate(arrays.items()):
        # mix raw and gzipped files: both must be accepted
        write_idx(root / (f"{name}.gz" if gz and i % 2 == 0 else name), a)
    return arrays


def write_cifar_pickle(path: Path, obj: dict, protocol: int = 2) -> None:
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)


def make_cifar10(root: Path, per_batch: int = 4) -> tuple[np.ndarray, list[int]]:
    """A cifar-10-batches-py folder; returns all training rows and labels in order."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rows, labels = [], []
    for i in range(1, 6):
        data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
        lab = [(i + j) % 10 for j in range(per_batch)]
        # protocol 2 is what the original (Python 2) files use; 5 stores arrays differently
        write_cifar_pickle(folder / f"data_batch_{i}",
                           {b"batch_label": b"training batch", b"data": data, b"labels": lab,
                            b"filenames": [b"x.png"] * per_batch}, protocol=2 if i % 2 else 5)
        rows.append(data)
        labels += lab
    write_cifar_pickle(folder / "test_batch",
                       {b"data": rng.integers(0, 256, (3, 3072), dtype=np.uint8),
                        b"labels": [9, 0, 1]})
    names = [b"airplane", b"automobile", b"bird", b"cat", b"deer", b"dog", b"frog", b"horse",
             b"ship", b"truck"]
    write_cifar_pickle(folder / "batches.meta",
                       {b"label_names": names, b"num_cases_per_batch": per_batch})
    return np.concatenate(rows), labels


# ---------------------------------------------------------------- IDX (MNIST family)


def test_mnist_from_raw_and_gzip_idx(tmp_path: Path) -> None:
    arrays = make_idx_folder(tmp_path)
    ds = load_image_dataset("mnist", tmp_path)
    assert isinstance(ds, ImageDataset)
    assert ds.train_x.shape == (12, 1, 5, 4) and ds.test_x.shape == (5, 1, 5, 4)
    assert ds.train_x.dtype == torch.uint8 and ds.train_y.dtype == torch.int64
    assert ds.train_x.is_contiguous() and ds.train_x.device.type == "cpu"
    assert np.array_equal(ds.train_x[:, 0].numpy(), arrays["train-images-idx3-ubyte"])
    assert ds.test_y.tolist() == arrays["t10k-labels-idx1-ubyte"].tolist()
    assert ds.classes == [str(d) for d in range(10)]
    assert ds.hflip is False  # a mirrored digit is another symbol
    assert ds.shape == (1, 5, 4) and ds.image_size == (5, 4) and ds.channels == 1
    assert ds.num_classes == 10
    ref = ds.train_x.double() / 255
    assert ds.mean[0] == pytest.approx(ref.mean().item(), abs=1e-12)
    assert ds.std[0] == pytest.approx(ref.std(unbiased=False).item(), abs=1e-12)


def test_fashion_mnist_names_flip_and_default_root(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    make_idx_folder(tmp_path, gz=False)
    monkeypatch.setattr(idx_mod, "FASHION_MNIST_DEFAULT_ROOT", tmp_path)
    ds = load_image_dataset("fashion-mnist")  # no root: the (patched) system location
    assert ds.classes[0] == "T-shirt/top" and ds.classes[-1] == "Ankle boot"
    assert ds.hflip is True
    monkeypatch.setattr(idx_mod, "FASHION_MNIST_DEFAULT_ROOT", tmp_path / "absent")
    with pytest.raises(NaspError, match="--data-root"):
        load_image_dataset("fashion-mnist")


def test_missing_root_asks_for_data_root() -> None:
    for name in ("mnist", "cifar10", "cifar100", "folder", "tiny-imagenet"):
        with pytest.raises(NaspError) as e:
            load_image_dataset(name)
        assert "--data-root" in str(e.value)


def test_root_that_is_not_a_folder(tmp_path: Path) -> None:
    with pytest.raises(NaspError, match="not a folder"):
        load_image_dataset("mnist", tmp_path / "nowhere")


def test_idx_missing_file_is_named(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(NaspError) as e:
        load_image_dataset("mnist", tmp_path)
    assert "t10k-labels-idx1-ubyte" in str(e.value)


def test_idx_bad_magic_number_is_named(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    # labels file with the magic number of an image file
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(12), magic=0x00000803)
    with pytest.raises(NaspError) as e:
        load_image_dataset("mnist", tmp_path)
    assert "train-labels-idx1-ubyte" in str(e.value)
    assert "0x00000803" in str(e.value) and "0x00000801" in str(e.value)


def test_idx_truncated_raw_file_is_named(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(NaspError) as e:
        load_image_dataset("mnist", tmp_path)
    assert str(path) in str(e.value) and "expected 12" in str(e.value)


def test_idx_truncated_gzip_file_is_named(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:40])
    with pytest.raises(NaspError) as e:
        load_image_dataset("mnist", tmp_path)
    assert str(path) in str(e.value)


def test_idx_label_count_mismatch(tmp_path: Path) -> None:
    make_idx_folder(tmp_path)
    write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(11))
    with pytest.raises(NaspError) as e:
        load_image_dataset("mnist", tmp_path)
    assert "11 labels" in str(e.value) and "train-images-idx3-ubyte" in str(e.value)


def test_unknown_dataset_lists_the_choices() -> None:
    with pytest.raises(NaspError) as e:
        load_image_dataset("imagenet-22k")
    assert "cifar10" in str(e.value) and "--data" in str(e.value)
    assert set(IMAGE_DATASETS.names()) >= {"fashion-mnist-sample", "fashion-mnist", "mnist",
                                           "cifar10", "cifar100", "folder", "tiny-imagenet"}


# ---------------------------------------------------------------- bundled sample


def test_bundled_fashion_mnist_sample() -> None:
    ds = load_image_dataset("fashion-mnist-sample")
    assert ds.train_x.shape == (10_000, 1, 28, 28) and ds.test_x.shape == (2_000, 1, 28, 28)
    assert torch.bincount(ds.train_y, minlength=10).tolist() == [1000] * 10
    assert torch.bincount(ds.test_y, minlength=10).tolist() == [200] * 10
    assert ds.classes == ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                          "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert ds.hflip and ds.num_classes == 10
    assert 0.2 < ds.mean[0] < 0.4 and 0.25 < ds.std[0] < 0.45  # Fashion-MNIST: 0.286, 0.353
    # real images, not noise: the border is mostly background, the centre is not
    assert ds.train_x[:, :, 0, :].float().mean() < ds.train_x[:, :, 14, :].float().mean()
    assert not torch.equal(ds.train_x[0], ds.train_x[1])
    bundled = Path(idx_mod.__file__).parent / "bundled"
    assert (bundled / "LICENSE-fashion-mnist.txt").read_text().count("Zalando SE") == 1


def test_bundled_sample_ignores_root(tmp_path: Path) -> None:
    assert load_image_dataset("fashion-mnist-sample", tmp_path).train_x.shape[0] == 10_000


# ---------------------------------------------------------------- CIFAR


def test_cifar10_layout_and_parent_folder(tmp_path: Path) -> None:
    rows, labels = make_cifar10(tmp_path)
    for root in (tmp_path / "cifar-10-batches-py", tmp_path):
        ds = load_image_dataset("cifar10", root)
        assert ds.train_x.shape == (20, 3, 32, 32) and ds.test_x.shape == (3, 3, 32, 32)
        assert ds.train_y.tolist() == labels and ds.test_y.tolist() == [9, 0, 1]
        assert ds.classes[:2] == ["airplane", "automobile"] and len(ds.classes) == 10
        assert ds.hflip
    # rows are channel-major: 1024 red values, then green, then blue, each row by row
    i, c, r, k = 7, 2, 5, 30
    assert ds.train_x[i, c, r, k].item() == rows[i, c * 1024 + r * 32 + k]
    assert ds.mean == pytest.approx(channel_stats(ds.train_x)[0])
    assert len(ds.mean) == len(ds.std) == 3


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    data = np.arange(6 * 3072, dtype=np.int64).astype(np.uint8).reshape(6, 3072)
    write_cifar_pickle(folder / "train", {b"data": data, b"fine_labels": [0, 99, 5, 5, 1, 2],
                                          b"coarse_labels": [0, 19, 1, 1, 0, 0]})
    write_cifar_pickle(folder / "test", {b"data": data[:2], b"fine_labels": [3, 4],
                                         b"coarse_labels": [0, 1]})
    write_cifar_pickle(folder / "meta",
                       {b"fine_label_names": [f"c{i}".encode() for i in range(100)],
                        b"coarse_label_names": [f"s{i}".encode() for i in range(20)]})
    ds = load_image_dataset("cifar100", tmp_path)
    assert ds.train_y.tolist() == [0, 99, 5, 5, 1, 2] and ds.test_y.tolist() == [3, 4]
    assert ds.num_classes == 100 and ds.classes[99] == "c99"
    assert ds.train_x.shape == (6, 3, 32, 32)


def test_cifar_missing_batch_is_named(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    (tmp_path / "cifar-10-batches-py" / "data_batch_3").unlink()
    with pytest.raises(NaspError) as e:
        load_image_dataset("cifar10", tmp_path)
    assert "data_batch_3" in str(e.value)


def test_cifar_pickle_without_expected_keys(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_2"
    write_cifar_pickle(path, {b"data": np.zeros((4, 3072), np.uint8), b"fine_labels": [0] * 4})
    with pytest.raises(NaspError) as e:
        load_image_dataset("cifar10", tmp_path)
    assert str(path) in str(e.value) and "labels" in str(e.value)


def test_cifar_wrong_row_length_and_truncated_pickle(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "test_batch"
    write_cifar_pickle(path, {b"data": np.zeros((3, 1024), np.uint8), b"labels": [0, 1, 2]})
    with pytest.raises(NaspError, match="3072") as e:
        load_image_dataset("cifar10", tmp_path)
    assert str(path) in str(e.value)
    write_cifar_pickle(path, {b"data": np.zeros((3, 3072), np.uint8), b"labels": [0, 1, 2]})
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(NaspError) as e:
        load_image_dataset("cifar10", tmp_path)
    assert str(path) in str(e.value)


class _Exploit:
    def __reduce__(self):  # would run os.system on an unrestricted unpickler
        return (os.system, ("echo pwned > /dev/null",))


def test_cifar_pickle_cannot_run_code(tmp_path: Path) -> None:
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "batches.meta"
    write_cifar_pickle(path, {b"label_names": [_Exploit()]})
    with pytest.raises(NaspError, match="refusing") as e:
        load_image_dataset("cifar10", tmp_path)
    assert str(path) in str(e.value)


# ---------------------------------------------------------------- folder of images


def save_png(path: Path, array: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def make_folder_tree(root: Path, test_name: str = "test", gray: bool = False
                     ) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(2)
    shape = (6, 5) if gray else (6, 5, 3)
    images = {}
    for split, counts in (("train", {"cat": 3, "dog": 2, "ant": 1}),
                          (test_name, {"cat": 1, "dog": 2})):
        for cls, n in counts.items():
            for i in range(n):
                a = rng.integers(0, 256, shape, dtype=np.uint8)
                rel = f"{split}/{cls}/img{i}.png"
                save_png(root / rel, a)
                images[rel] = a
    (root / "train" / "cat" / "notes.txt").write_text("not an image")
    return images


def test_folder_dataset_and_cache_reuse(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    images = make_folder_tree(tmp_path)
    ds = load_image_dataset("folder", tmp_path)
    assert ds.classes == ["ant", "cat", "dog"]  # sorted folder names
    assert ds.train_x.shape == (6, 3, 6, 5) and ds.test_x.shape == (3, 3, 6, 5)
    assert ds.train_y.tolist() == [0, 1, 1, 1, 2, 2] and ds.test_y.tolist() == [1, 2, 2]
    # PNG is lossless: the pixels come back exactly, in sorted file order, as (C, H, W)
    assert np.array_equal(ds.train_x[1].permute(1, 2, 0).numpy(), images["train/cat/img0.png"])
    assert ds.hflip
    cache = tmp_path / ".nasp-folder-cache.npz"
    assert cache.is_file()

    def no_decoding(*args, **kwargs):
        raise AssertionError("the cache should have been used")

    monkeypatch.setattr(folder_mod, "decode_images", no_decoding)
    again = load_image_dataset("folder", tmp_path)
    assert torch.equal(again.train_x, ds.train_x) and again.classes == ds.classes
    assert torch.equal(again.test_y, ds.test_y)
    # a new file changes the fingerprint, so the cache is rebuilt rather than served stale
    save_png(tmp_path / "test" / "ant" / "new.png", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(AssertionError, match="cache should"):
        load_image_dataset("folder", tmp_path)
    monkeypatch.undo()
    assert load_image_dataset("folder", tmp_path).test_y.tolist() == [0, 1, 2, 2]


def test_folder_cache_falls_back_to_user_cache_dir(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "data"
    make_folder_tree(root)
    (root / ".nasp-folder-cache.npz").mkdir()  # the in-folder cache cannot be written
    monkeypatch.setenv("NASP_CACHE_DIR", str(tmp_path / "cache"))
    load_image_dataset("folder", root)
    assert len(list((tmp_path / "cache").glob("folder-*.npz"))) == 1
    monkeypatch.setattr(folder_mod, "decode_images", None)  # would fail if called
    assert load_image_dataset("folder", root).train_x.shape == (6, 3, 6, 5)


def test_folder_gray_images_and_val_split(tmp_path: Path) -> None:
    make_folder_tree(tmp_path, test_name="val", gray=True)
    ds = load_image_dataset("folder", tmp_path)
    assert ds.shape == (1, 6, 5) and len(ds.test_y) == 3


def test_folder_gray_train_with_colour_test_becomes_rgb(tmp_path: Path) -> None:
    make_folder_tree(tmp_path, gray=True)
    save_png(tmp_path / "test" / "cat" / "img0.png", np.full((6, 5, 3), 7, np.uint8))
    ds = load_image_dataset("folder", tmp_path)
    assert ds.shape == (3, 6, 5)
    assert torch.equal(ds.train_x[:, 0], ds.train_x[:, 2])  # gray replicated to RGB


def test_folder_size_mismatch_names_the_file(tmp_path: Path) -> None:
    make_folder_tree(tmp_path)
    save_png(tmp_path / "train" / "dog" / "big.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(NaspError) as e:
        load_image_dataset("folder", tmp_path)
    assert "big.png" in str(e.value) and "8x8" in str(e.value) and "5x6" in str(e.value)


def test_folder_layout_errors(tmp_path: Path) -> None:
    make_folder_tree(tmp_path)
    (tmp_path / "train" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(NaspError, match="broken.png"):
        load_image_dataset("folder", tmp_path)
    (tmp_path / "train" / "cat" / "broken.png").unlink()
    (tmp_path / "train" / "empty").mkdir()
    with pytest.raises(NaspError, match="empty"):
        load_image_dataset("folder", tmp_path)
    (tmp_path / "train" / "empty").rmdir()
    save_png(tmp_path / "test" / "zebra" / "z.png", np.zeros((6, 5, 3), np.uint8))
    with pytest.raises(NaspError, match="zebra"):
        load_image_dataset("folder", tmp_path)
    with pytest.raises(NaspError, match="train"):
        load_image_dataset("folder", tmp_path / "test")


# ---------------------------------------------------------------- Tiny ImageNet


WNIDS = ["n02", "n01", "n03"]  # deliberately unsorted in wnids.txt


def save_jpeg(path: Path, colour: tuple[int, int, int] | int, size: int = 64) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = "L" if isinstance(colour, int) else "RGB"
    Image.new(mode, (size, size), colour).save(path, quality=95)


def colour_of(wnid: str) -> tuple[int, int, int]:
    return {"n01": (200, 20, 20), "n02": (20, 200, 20), "n03": (20, 20, 200)}[wnid]


def make_tiny_imagenet(parent: Path) -> Path:
    root = parent / "tiny-imagenet-200"
    root.mkdir(parents=True)
    (root / "wnids.txt").write_text("\n".join(WNIDS) + "\n")
    (root / "words.txt").write_text("n01\tgoldfish, Carassius auratus\nn02\ttabby, tabby cat\n"
                                    "n99\tunused\n")
    for wnid in WNIDS:
        for i in range(2):
            save_jpeg(root / "train" / wnid / "images" / f"{wnid}_{i}.JPEG", colour_of(wnid))
        (root / "train" / wnid / f"{wnid}_boxes.txt").write_text("")
    save_jpeg(root / "train" / "n03" / "images" / "n03_gray.JPEG", 128)  # some are grayscale
    rows = [("val_0.JPEG", "n03"), ("val_1.JPEG", "n01"), ("val_2.JPEG", "n01"),
            ("val_3.JPEG", "n02")]
    for name, wnid in rows:
        save_jpeg(root / "val" / "images" / name, colour_of(wnid))
    (root / "val" / "val_annotations.txt").write_text(
        "".join(f"{name}\t{wnid}\t0\t0\t63\t63\n" for name, wnid in rows))
    (root / "test" / "images").mkdir(parents=True)  # unlabelled, ignored
    return root


def test_tiny_imagenet_layout_and_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_tiny_imagenet(tmp_path)
    ds = load_image_dataset("tiny-imagenet", root)
    assert ds.train_x.shape == (7, 3, 64, 64) and ds.test_x.shape == (4, 3, 64, 64)
    assert ds.train_x.dtype == torch.uint8
    # classes in sorted wnid order, named from words.txt where it has the wnid
    assert ds.classes == ["goldfish", "tabby", "n03"]
    assert ds.train_y.tolist() == [0, 0, 1, 1, 2, 2, 2]
    assert ds.test_y.tolist() == [2, 0, 0, 1]  # from val_annotations.txt, in file order
    # JPEG is lossy; solid colours survive to within a few levels
    mean_colour = ds.test_x[1].float().mean(dim=(1, 2))
    assert torch.allclose(mean_colour, torch.tensor([200.0, 20.0, 20.0]), atol=4)
    gray = ds.train_x[6].float().mean(dim=(1, 2))  # n03_gray sorts after n03_0, n03_1
    assert torch.allclose(gray, torch.full((3,), 128.0), atol=2)
    assert ds.hflip

    monkeypatch.setattr(tiny_mod, "decode_images", None)  # would fail if called
    again = load_image_dataset("tiny-imagenet", tmp_path)  # the parent folder works too
    assert torch.equal(again.train_x, ds.train_x) and torch.equal(again.test_y, ds.test_y)


def test_tiny_imagenet_layout_errors(tmp_path: Path) -> None:
    root = make_tiny_imagenet(tmp_path)
    annotations = root / "val" / "val_annotations.txt"
    good = annotations.read_text()

    annotations.write_text(good + "val_9.JPEG\tn77\t0\t0\t1\t1\n")
    with pytest.raises(NaspError) as e:
        load_image_dataset("tiny-imagenet", root)
    assert "val_annotations.txt, line 5" in str(e.value)

    annotations.write_text(good + "val_9.JPEG\tn01\t0\t0\t1\t1\n")
    with pytest.raises(NaspError, match="val_9.JPEG"):
        load_image_dataset("tiny-imagenet", root)

    annotations.write_text(good)
    save_jpeg(root / "train" / "n02" / "images" / "n02_small.JPEG", (1, 2, 3), size=32)
    with pytest.raises(NaspError) as e:
        load_image_dataset("tiny-imagenet", root)
    assert "n02_small.JPEG" in str(e.value) and "64x64" in str(e.value)

    (root / "wnids.txt").unlink()
    with pytest.raises(NaspError, match="wnids.txt"):
        load_image_dataset("tiny-imagenet", root)


def test_tiny_imagenet_missing_class_folder(tmp_path: Path) -> None:
    root = make_tiny_imagenet(tmp_path)
    (root / "wnids.txt").write_text("\n".join([*WNIDS, "n04"]))
    with pytest.raises(NaspError) as e:
        load_image_dataset("tiny-imagenet", root)
    assert str(root / "train" / "n04" / "images") in str(e.value)
