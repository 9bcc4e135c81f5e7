"""Output paths and JSON files, without torch.

``nasp plot``, ``report`` and ``draw`` read run folders and write figures; importing torch for
that would add seconds to every call, so the few file helpers they share with the run folder
live here (``nasp.run_folder`` re-exports them).
"""

from __future__ import annotations

import errno
import json
import os
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


def read_json(path: str | os.PathLike) -> Any:
    p = Path(path)
    if not p.exists():
        raise NaspError(f"{p} does not exist", "check the run folder path")
    try:
        return json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise NaspError(f"{p} is not valid JSON ({e})", "the file is damaged; re-run") from None
