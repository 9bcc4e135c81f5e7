"""MNIST-family datasets in the IDX format (``train-images-idx3-ubyte[.gz]`` and friends).

The format is a 4-byte magic number (two zero bytes, a type code, the number of dimensions),
one big-endian uint32 per dimension, then the raw values. Only unsigned bytes (type 0x08) occur
in the MNIST family, so that is all this reader accepts.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from nasp.data.dataset import IMAGE_DATASETS, ImageDataset, make_dataset, require_root
from nasp.errors import NaspError

_UBYTE = 0x08
FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot"]
MNIST_CLASSES = [str(d) for d in range(10)]
FASHION_MNIST_DEFAULT_ROOT = Path("/usr/share/datasets/fashion-mnist")
_FILES = {"train_x": ("train-images", 3), "train_y": ("train-labels", 1),
          "test_x": ("t10k-images", 3), "test_y": ("t10k-labels", 1)}


def _read_bytes(path: Path) -> bytes:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as f:
                return f.read()
        return path.read_bytes()
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise NaspError(f"cannot read {path}: {e}",
                        "the file is damaged or not gzip data; download it again") from None


def read_idx(path: str | Path, ndim: int | None = None) -> np.ndarray:
    """Read one IDX file (raw or gzip) of unsigned bytes, checking magic number and length."""
    path = Path(path)
    data = _read_bytes(path)
    what = f"an IDX file of unsigned bytes{f' with {ndim} dimension(s)' if ndim else ''}"
    if len(data) < 4:
        raise NaspError(f"{path} is truncated ({len(data)} bytes)", f"expected {what}")
    zero, dtype, dims = struct.unpack(">HBB", data[:4])
    magic = int.from_bytes(data[:4], "big")
    if zero != 0 or dtype != _UBYTE or (ndim is not None and dims != ndim):
        want = f"0x{(_UBYTE << 8) | ndim:08x}" if ndim else "0x000008 + number of dimensions"
        raise NaspError(f"{path} has magic number 0x{magic:08x}, expected {want}",
                        f"expected {what}; is this the right file?")
    header = 4 + 4 * dims
    if len(data) < header:
        raise NaspError(f"{path} is truncated inside its header", f"expected {what}")
    shape = struct.unpack(f">{dims}I", data[4:header])
    count = int(np.prod(shape, dtype=np.int64))
    if len(data) - header != count:
        raise NaspError(
            f"{path} holds {len(data) - header} bytes of values, expected {count} for shape "
            f"{tuple(shape)}",
            "the file is truncated or damaged; download it again")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(shape)


def _find(root: Path, stem: str, ndim: int) -> Path:
    # The original site names files "train-images-idx3-ubyte"; some mirrors use a dot instead.
    names = [f"{stem}-idx{ndim}-ubyte", f"{stem}.idx{ndim}-ubyte"]
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    raise NaspError(f"{root / names[0]}[.gz] not found",
                    "the folder must hold the four IDX files train-images-idx3-ubyte, "
                    "train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte "
                    "(gzipped or not)")


def load_idx_folder(root: Path, name: str, classes: list[str], *, hflip: bool) -> ImageDataset:
    """Load the four IDX files of an MNIST-like dataset from ``root``."""
    arrays, paths = {}, {}
    for key, (stem, ndim) in _FILES.items():
        paths[key] = _find(root, stem, ndim)
        arrays[key] = read_idx(paths[key], ndim)
    for split in ("train", "test"):
        x, y = arrays[f"{split}_x"], arrays[f"{split}_y"]
        if len(x) != len(y):
            raise NaspError(f"{paths[f'{split}_y']} has {len(y)} labels but "
                            f"{paths[f'{split}_x']} has {len(x)} images",
                            "expected one label per image; the files do not belong together")
        if len(y) and int(y.max()) >= len(classes):
            raise NaspError(f"{paths[f'{split}_y']} has label {int(y.max())}",
                            f"expected labels 0..{len(classes) - 1}")
    if arrays["train_x"].shape[1:] != arrays["test_x"].shape[1:]:
        raise NaspError(f"{paths['train_x']} and {paths['test_x']} have different image sizes",
                        "expected both splits of the same dataset")
    return make_dataset(name, arrays["train_x"][:, None], arrays["train_y"],
                        arrays["test_x"][:, None], arrays["test_y"], classes, hflip=hflip)


@IMAGE_DATASETS.register("fashion-mnist")
def load_fashion_mnist(root: Path | None) -> ImageDataset:
    """Full Fashion-MNIST; defaults to the Debian package's files when they are installed."""
    if root is None and FASHION_MNIST_DEFAULT_ROOT.is_dir():
        root = FASHION_MNIST_DEFAULT_ROOT
    path = require_root("fashion-mnist", root, "the four Fashion-MNIST IDX files")
    return load_idx_folder(path, "fashion-mnist", FASHION_MNIST_CLASSES, hflip=True)


@IMAGE_DATASETS.register("mnist")
def load_mnist(root: Path | None) -> ImageDataset:
    """MNIST digits; flips are off because a mirrored digit is not the same digit."""
    path = require_root("mnist", root, "the four MNIST IDX files")
    return load_idx_folder(path, "mnist", MNIST_CLASSES, hflip=False)


BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"


@IMAGE_DATASETS.register("fashion-mnist-sample")
def load_fashion_mnist_sample(root: Path | None = None) -> ImageDataset:
    """The stratified 10k/2k Fashion-MNIST subset shipped inside the package (root is ignored).

    It exists so that ``nasp search`` works out of the box with no download; see
    ``bundled/README.md`` for how it was drawn.
    """
    if not BUNDLED_DIR.is_dir():
        raise NaspError(f"the bundled sample folder {BUNDLED_DIR} is missing",
                        "reinstall nasp, or run scripts/make_fashion_mnist_sample.py")
    return load_idx_folder(BUNDLED_DIR, "fashion-mnist-sample", FASHION_MNIST_CLASSES, hflip=True)
