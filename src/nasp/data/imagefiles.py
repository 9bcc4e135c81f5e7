"""Decoding folders of image files once, and caching the result as one ``.npz`` per dataset.

Decoding 100,000 JPEGs takes about a minute; reading them back from an uncompressed ``.npz``
takes seconds. The cache is keyed by a fingerprint of the file list (names, sizes,
modification times), so adding, removing or replacing a file rebuilds it instead of silently
serving stale data.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from nasp.errors import NaspError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                            ".ppm", ".pgm", ".pbm"})
_GRAY_MODES = frozenset({"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"})
CACHE_VERSION = 2  # bump whenever the cached arrays change
_THREADS = max(1, min(8, os.cpu_count() or 1))  # Pillow releases the GIL while decoding


def list_images(folder: str | os.PathLike) -> list[str]:
    """Image files under ``folder`` (any depth), sorted so the order never depends on the OS.

    Plain strings and ``os.walk`` rather than ``Path.rglob``: pathlib's per-path overhead is
    most of the cost of listing Tiny ImageNet's 110,000 files.
    """
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if not d.startswith(".")]
        found += [os.path.join(dirpath, f) for f in filenames
                  if not f.startswith(".") and os.path.splitext(f)[1].lower() in IMAGE_SUFFIXES]
    found.sort(key=lambda p: p.split(os.sep))
    return found


def _open(path: str | os.PathLike) -> Image.Image:
    try:
        return Image.open(path)
    except (UnidentifiedImageError, OSError) as e:
        raise NaspError(f"cannot read image {path}: {e}",
                        "remove the file or replace it with a valid image") from None


def _is_gray(path: str | os.PathLike) -> bool:
    with _open(path) as im:
        return im.mode in _GRAY_MODES


def decode_images(paths: Sequence[str | os.PathLike], *, mode: str | None = None,
                  size: tuple[int, int] | None = None, like: str | os.PathLike | None = None,
                  fix: str = "") -> np.ndarray:
    """Decode ``paths`` into one uint8 (N, C, H, W) array (written in place: no second copy).

    ``mode`` is "L" or "RGB"; None picks "L" when every image is grayscale, else "RGB".
    ``size`` is (width, height) as Pillow reports it; None takes the first image's size. An
    image of another size is an error naming the file (resizing silently would change the data)
    and ``like`` (default: the first file); ``fix`` is appended to that error's hint.
    """
    if not paths:
        return np.zeros((0, 1 if mode == "L" else 3, *(size or (0, 0))[::-1]), np.uint8)
    with ThreadPoolExecutor(_THREADS) as pool:
        if mode is None:
            mode = "L" if all(pool.map(_is_gray, paths)) else "RGB"
        if size is None:
            with _open(paths[0]) as im:
                size = im.size
            like = paths[0]
        channels = 1 if mode == "L" else 3
        out = np.empty((len(paths), channels, size[1], size[0]), np.uint8)

        def decode(i: int) -> None:
            with _open(paths[i]) as im:
                if im.size != size:
                    raise NaspError(
                        f"image {paths[i]} is {im.size[0]}x{im.size[1]}, expected "
                        f"{size[0]}x{size[1]}" + (f" like {like}" if like else ""),
                        f"all images must have the same size{fix}")
                try:
                    arr = np.asarray(im.convert(mode))
                except OSError as e:  # truncated or corrupt pixel data
                    raise NaspError(f"cannot decode image {paths[i]}: {e}",
                                    "remove the file or replace it with a valid image") from None
            out[i] = arr.reshape(size[1], size[0], channels).transpose(2, 0, 1)

        for _ in pool.map(decode, range(len(paths))):
            pass  # re-raises the first error, in file order
    return out


def fingerprint(files: Iterable[str | os.PathLike], base: str | os.PathLike,
                extra: str = "") -> str:
    """A digest of the files' names (relative to ``base``), sizes and modification times."""
    h = hashlib.sha256(f"nasp-cache-v{CACHE_VERSION}\n{extra}\n".encode())
    skip = len(str(base)) + 1
    for p in files:
        name = os.fspath(p)
        st = os.stat(name)
        h.update(f"{name[skip:]}\t{st.st_size}\t{st.st_mtime_ns}\n".encode())
    return h.hexdigest()


def user_cache_dir() -> Path:
    """Where caches go when the dataset folder is read-only (``$NASP_CACHE_DIR`` overrides)."""
    if os.environ.get("NASP_CACHE_DIR"):
        return Path(os.environ["NASP_CACHE_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "nasp"


def cache_candidates(root: Path, kind: str) -> list[Path]:
    """Cache locations in order of preference: inside the dataset folder, then the user cache."""
    tag = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16]
    return [root / f".nasp-{kind}-cache.npz", user_cache_dir() / f"{kind}-{tag}.npz"]


def load_cache(root: Path, kind: str, key: str) -> dict[str, np.ndarray] | None:
    """The cached arrays for ``root`` if a cache with fingerprint ``key`` exists, else None."""
    for path in cache_candidates(root, kind):
        if not path.is_file():
            continue
        try:
            with np.load(path, allow_pickle=False) as npz:
                if str(npz["fingerprint"]) != key:
                    continue
                return {k: npz[k] for k in npz.files if k != "fingerprint"}
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
            continue  # a damaged cache is rebuilt, never trusted
    return None


def save_cache(root: Path, kind: str, key: str, arrays: dict[str, np.ndarray]) -> Path | None:
    """Write the cache atomically to the first writable location; None if there is none."""
    errors = []
    for path in cache_candidates(root, kind):
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=path.name, suffix=".tmp", dir=path.parent)
            with os.fdopen(fd, "wb") as f:
                np.savez(f, fingerprint=np.array(key), **arrays)
            os.chmod(tmp, 0o644)  # mkstemp makes it private; a dataset cache is not secret
            os.replace(tmp, path)
            return path
        except OSError as e:
            errors.append(f"{path}: {e}")
            if tmp is not None and os.path.exists(tmp):
                os.unlink(tmp)
    warnings.warn(f"could not cache decoded images ({'; '.join(errors)}); they will be decoded "
                  "again next time. Set NASP_CACHE_DIR to a writable folder.", stacklevel=3)
    return None
