"""Output paths and JSON files, without torch.

``nasp plot``, ``report`` and ``draw`` read run folders and write figures; importing torch for
that would add seconds to every call, so the few file helpers they share with the run folder
live here (``nasp.run_folder`` re-exports them).
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from nasp.errors import NaspError


def write_error(path: Path, e: OSError) -> NaspError:
    """The one message for a failed write, by cause."""
    folder = path.parent if path.suffix else path
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return NaspError(f"no space left on the device while writing {path}",
                         f"free space for {folder}, then resume the run; the last good "
                         "checkpoint there is intact")
    if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return NaspError(f"cannot write {path}: {e.strerror}",
                         "choose a writable output folder (--out / -o)")
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        return NaspError(f"cannot create {path}: a file stands where a folder is needed",
                         "choose another output path (--out / -o)")
    return NaspError(f"cannot write {path}: {e.strerror or e}", "check the output folder")


def ensure_dir(path: str | os.PathLike) -> Path:
    """``mkdir -p`` with the one clear error for an impossible or unwritable place."""
    p = Path(path)
    try:
        p.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise write_error(p, OSError(errno.ENOTDIR, "not a directory")) from None
    except OSError as e:
        raise write_error(p, e) from None
    if not os.access(p, os.W_OK | os.X_OK):
        raise write_error(p, OSError(errno.EACCES, "permission denied"))
    return p


@contextmanager
def output_errors(path: str | os.PathLike) -> Iterator[None]:
    """Turn an ``OSError`` on the output ``path`` (a file or folder a command writes), on one
    of the folders above it or on a file under it into the one clear ``write_error``, so that
    ``nasp plot -o afile/x`` names the path in one line instead of showing a traceback. Errors
    on other files (the runs being read) pass through unchanged."""
    out = Path(os.path.abspath(path))
    try:
        yield
    except OSError as e:
        if e.filename is None or isinstance(e.filename, int):
            raise
        hit = Path(os.path.abspath(os.fsdecode(e.filename)))
        if hit == out or hit in out.parents or out in hit.parents:
            raise write_error(Path(os.fsdecode(e.filename)), e) from None
        raise


def read_json(path: str | os.PathLike, hint: str = "check the run folder path") -> Any:
    """A JSON file's value; a missing file, a folder, an unreadable or damaged file is one
    ``NaspError`` naming it (``hint``: how to point at the right file)."""
    p = Path(path)
    if p.is_dir():
        raise NaspError(f"{p} is a folder, not a file", hint)
    if not p.exists():
        raise NaspError(f"{p} does not exist", hint)
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NaspError(f"{p} is not valid JSON ({e})", "the file is damaged; re-run") from None
    except OSError as e:
        raise NaspError(f"cannot read {p}: {e.strerror or e}", hint) from None


# --- paths a command is given, checked before any work -----------------------------------------

def _given(path: str | os.PathLike, option: str) -> Path:
    if os.fspath(path) == "":
        raise NaspError(f"{option} is empty", f"give {option} a path")
    return Path(path)


def input_file(path: str | os.PathLike, option: str, what: str = "file") -> Path:
    """An existing file a command reads (``--config``, ``--cost-table`` ...), or the one clear
    error: an empty path, a folder, a missing file."""
    p = _given(path, option)
    if p.is_dir():
        raise NaspError(f"{what} {p} is a folder, not a file", f"give {option} a file")
    if not p.exists():
        raise NaspError(f"{what} {p} does not exist", f"check the {option} path")
    return p


def check_output(path: str | os.PathLike, option: str, folder: bool = False) -> Path:
    """Refuse, before any work and without writing anything, an output a command could not
    write: an empty path, a folder where a file goes (or a file where a folder goes), a path
    under a regular file, or a place where nothing can be created (a read-only disk,
    ``/proc``). The nearest existing folder is tried with a temporary file, removed at once:
    permission bits say nothing for root, nor for ``/proc``."""
    p = _given(path, option)
    if folder and p.exists() and not p.is_dir():
        raise NaspError(f"{p} is a file, not a folder", f"give {option} a folder")
    if not folder and p.is_dir():
        raise NaspError(f"{p} is a folder", f"give {option} a file name, e.g. {p / 'out'}")
    below = Path(os.path.abspath(p))
    place = below if folder and p.is_dir() else below.parent
    while not place.exists() and place != place.parent:
        place, below = place.parent, place
    if not place.is_dir():
        raise write_error(below, OSError(errno.ENOTDIR, "not a directory"))
    try:
        fd, probe = tempfile.mkstemp(dir=place, prefix=".nasp-write-check-")
    except OSError as e:
        raise write_error(p, e) from None
    os.close(fd)
    os.unlink(probe)
    return p
