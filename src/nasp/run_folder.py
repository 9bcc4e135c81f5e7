"""The run folder: one writer, atomic files, logs that never run ahead of the checkpoint.

Every ``nasp search``, ``nasp train`` and ``nasp compare`` writes one folder (docs/run-folder.md).
This module is the only code that writes into it, so the guarantees hold for all of them:

* **One writer.** A run holds an exclusive OS lock (``flock``) on ``RUN/.lock`` while it runs; a
  second search, train or compare on the same folder gets an error naming the process that holds
  it. The kernel releases the lock when the process dies, so a crash never leaves a stale lock.
* **No torn file.** Files are written to a temporary file in the same folder, fsynced and renamed
  over the target; a crash leaves the old file or the new one. Left-over temporary files of an
  interrupted write are removed by the next successful write and when a run is opened.
* **Logs never ahead of the checkpoint.** A checkpoint carries the records of every finished
  epoch; the JSONL logs are appended only after it is safely written, and a resumed run rewrites
  them from the checkpoint. A torn last line (power loss) or lines of an epoch whose checkpoint
  never landed disappear on resume.
* **Checkpoints are plain.** Tensors and plain containers only (random states included), so
  ``torch.load(path, weights_only=True)`` reads every checkpoint nasp writes.
* **Errors a user can act on.** A full disk, a read-only place or a path under a file is one
  ``NaspError`` naming the folder; the last good checkpoint stays.
"""

from __future__ import annotations

import io
import json
import os
import random
import shutil
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasp.errors import NaspError

# torch-free helpers, re-exported: the viz commands read run folders without loading torch
from nasp.files import check_output, ensure_dir, output_errors, read_json, write_error  # noqa: F401

# files a run writes; a run replaced with --overwrite loses all of them
RUN_FILES = ("config.json", "metrics.jsonl", "arch.jsonl", "genotype.json", "result.json",
             "checkpoint.pt", "best.pt")
RUN_DIRS = ("tb",)
LOCK_NAME = ".lock"

_umask = os.umask(0)
os.umask(_umask)
FILE_MODE = 0o666 & ~_umask  # what open() would give: every file of a folder alike


# --- atomic files --------------------------------------------------------------------------------

def _remove_stale_tmp(folder: Path, name: str | None = None) -> None:
    pattern = f".{name}.*.tmp" if name else ".*.tmp"
    for tmp in folder.glob(pattern):
        try:
            tmp.unlink()
        except OSError:
            pass


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Temporary file in the same folder, fsync, rename over the target (see module doc)."""
    path = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise write_error(path, e) from None
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:
        _unlink_quietly(tmp)
        raise write_error(path, e) from None
    except BaseException:
        _unlink_quietly(tmp)
        raise
    _remove_stale_tmp(path.parent, path.name)


def _unlink_quietly(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def _jsonable(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.detach().cpu().tolist()
    if isinstance(obj, np.ndarray | np.generic):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "to_dict"):
        return obj.to_dict()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def json_text(obj: Any) -> str:
    return json.dumps(obj, indent=2, default=_jsonable) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_bytes(path, json_text(obj).encode())


class JsonlLog:
    """One JSON object per line, one line per epoch; appended after the epoch's checkpoint."""

    def __init__(self, path: str | os.PathLike) -> None:
        self.path = Path(path)

    def append(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, default=_jsonable) + "\n"
        try:
            with self.path.open("a") as f:
                f.write(line)
                f.flush()
        except OSError as e:
            raise write_error(self.path, e) from None

    def read(self) -> list[dict[str, Any]]:
        """Every complete record; a torn line (a crash mid-append) is skipped."""
        if not self.path.exists():
            return []
        out = []
        for line in self.path.read_text(errors="replace").splitlines():
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(record, dict):
                out.append(record)
        return out

    def rewrite(self, records: Iterable[dict[str, Any]]) -> None:
        atomic_write_bytes(self.path, "".join(json.dumps(r, default=_jsonable) + "\n"
                                              for r in records).encode())


# --- random states and checkpoints ---------------------------------------------------------------

def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def rng_state() -> dict[str, Any]:
    """Every global random state, as tensors and plain containers (``weights_only``-safe)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)),
                  "pos": int(pos), "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "python": random.getstate(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"],
                         n["has_gauss"], n["gauss"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | os.PathLike, state: dict[str, Any]) -> None:
    """``torch.save`` into memory, then an atomic write."""
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | os.PathLike,
                    map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise NaspError(f"no checkpoint at {p}", "resume a folder written by nasp search/train")
    try:
        return torch.load(p, map_location=map_location, weights_only=True)
    except Exception as e:  # a damaged file: say so instead of an unpickling traceback
        raise NaspError(f"checkpoint {p} cannot be read ({type(e).__name__})",
                        "the file is damaged; start the run again") from None


def _signature(path: Path) -> tuple[int, int, int]:
    st = path.stat()
    return st.st_ino, st.st_size, st.st_mtime_ns


# --- the lock ------------------------------------------------------------------------------------

# path -> (fd, depth): a process may lock a folder it already holds (compare -> its own search)
_HELD: dict[str, list[int]] = {}
# what a lock says holds it, after the process id: set by processes whose command line says
# nothing (a compare's worker is ``python -c ...``)
HOLDER: list[str] = []
# the run folders this process has opened to write, latest last (named when it is interrupted)
OPENED: list[Path] = []


def _holder() -> str:
    if HOLDER:
        return HOLDER[-1]
    argv = list(sys.argv)
    if argv and Path(argv[0]).name in ("nasp", "__main__.py"):
        argv[0] = "nasp"
    return " ".join(argv[:3]) or "python"


def _describe_holder(lock_path: Path) -> str:
    try:
        text = lock_path.read_text().strip()
    except OSError:
        return "another process"
    return f"process {text}" if text else "another process"


def _in_use(folder: Path) -> NaspError:
    return NaspError(f"{folder} is in use by {_describe_holder(folder / LOCK_NAME)}",
                     "wait for it to finish or stop it; two writers would mix the run's "
                     "records")


def refuse_if_locked(folder: Path) -> None:
    """Raise the "in use" error when another process holds ``folder``'s lock, creating and
    writing nothing: a command about to fail for another reason must still name the writer
    (its run may simply not have reached a checkpoint yet) yet leave the folder as it was."""
    if str(folder.resolve()) in _HELD:
        return
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return  # no lock file: no writer
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released by the close below
    except ImportError:
        pass
    except OSError:
        raise _in_use(folder) from None
    finally:
        os.close(fd)


def acquire_lock(folder: Path) -> None:
    """Exclusive, non-blocking ``flock`` on ``folder/.lock``; the kernel drops it at exit."""
    key = str(folder.resolve())
    if key in _HELD:
        _HELD[key][1] += 1
        return
    lock_path = folder / LOCK_NAME
    try:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, FILE_MODE)
    except OSError as e:
        raise write_error(lock_path, e) from None
    try:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except ImportError:  # no flock (Windows): one writer is then the user's business
        pass
    except OSError:
        os.close(fd)
        raise _in_use(folder) from None
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()} ({_holder()})".encode())
    _HELD[key] = [fd, 1]


def release_lock(folder: Path) -> None:
    key = str(folder.resolve())
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] == 0:
        del _HELD[key]
        os.close(held[0])  # closing the descriptor releases the flock


# --- the folder ----------------------------------------------------------------------------------

class RunFolder:
    """A locked run folder: fresh (``create``) or continued (``resume``).

    Use it as a context manager, or call ``close`` when the run ends; the lock goes with the
    process anyway."""

    def __init__(self, path: Path, resumed: bool = False, overwrite: bool = False,
                 writer: bool = True) -> None:
        self.path = path
        self.resumed = resumed
        self.started = False
        self.writer = writer
        self._overwrite = overwrite
        self.tensorboard: Any = None  # a TensorBoardLogger once ``log_to_tensorboard``
        # a resumed run's checkpoint, read (on the CPU) before its folder was locked
        self._checkpoint: dict[str, Any] | None = None

    @classmethod
    def open(cls, path: str | os.PathLike, *, resume: bool, overwrite: bool = False,
             command: str = "nasp search", writer: bool = True) -> RunFolder:
        """The folder of a run about to start or resume. A resumed run's folder exists and is
        locked at once; a new one is only checked here, and created and locked by ``start``
        once everything a user can get wrong has been checked, so a mistake creates nothing.

        ``writer=False`` (every rank of a data-parallel run but rank 0): nothing is locked or
        written, and a new run's folder is not looked at (on another machine it may be another
        disk's folder of the same name; rank 0's refusal reaches every rank through
        ``Dist.setup``); a resumed run's checkpoint must be readable."""
        if not writer:
            p = Path(path)
            if resume and not (p / "checkpoint.pt").is_file():
                raise NaspError(f"{p} has no checkpoint this process can read",
                                "resume a folder whose checkpoint every rank can read (a "
                                "shared filesystem when the ranks are on several machines)")
            return cls(p, resumed=resume, writer=False)
        if resume:
            return cls.resume(path, command)
        cls.check_new(path, overwrite)
        return cls(Path(path), overwrite=overwrite)

    def start(self) -> None:
        """Create and lock a new run's folder (a resumed one already is)."""
        if self.started or not self.writer:
            return
        self.path = ensure_dir(self.path)
        acquire_lock(self.path)
        self.started = True
        OPENED.append(self.path)
        try:
            self.check_new(self.path, self._overwrite)  # again: no one else can write now
            if self._overwrite:
                self._clear()
            _remove_stale_tmp(self.path)
        except BaseException:
            self.close()
            raise

    # opening ----------------------------------------------------------------------------------
    @staticmethod
    def check_new(path: str | os.PathLike, overwrite: bool = False) -> None:
        """Refuse, before any work, to start a run where one already is, or where none can be
        written (leaves everything as it was). A folder another process is writing is named
        as such first: the other ways out (--resume, --overwrite) would be refused too."""
        p = Path(path)
        if p.exists() and not p.is_dir():
            raise NaspError(f"{p} is a file, not a folder", "choose another --out")
        if p.is_dir():
            refuse_if_locked(p)
        if not overwrite and any((p / name).exists() for name in ("checkpoint.pt", "config.json")):
            raise NaspError(f"run folder {p} already holds a run",
                            f"pass --resume {p} to continue it, --overwrite to replace it, "
                            "or choose another --out")
        check_output(p, "--out", folder=True)

    @classmethod
    def create(cls, path: str | os.PathLike, overwrite: bool = False) -> RunFolder:
        """A new run's folder, created and locked; ``overwrite`` removes what an earlier run
        left there."""
        folder = cls.open(path, resume=False, overwrite=overwrite)
        folder.start()
        return folder

    @classmethod
    def resume(cls, path: str | os.PathLike, command: str) -> RunFolder:
        """An existing run with a checkpoint, locked. ``command`` is the one that started it
        (named when there is no checkpoint to resume yet)."""
        p = Path(path)
        if not p.is_dir():
            raise NaspError(f"run folder {p} does not exist", "check the --resume path")
        no_checkpoint = NaspError(
            f"{p} has no checkpoint yet (the run stopped before its first epoch ended)",
            f"start it again: `{command} --out {p} --overwrite` with the options it was "
            "started with")
        # checked, and the checkpoint read, before locking: a failed resume leaves the folder as
        # it was (no new .lock, nor one rewritten with this process's id)
        refuse_if_locked(p)  # a running run (maybe still in its first epoch): name its process
        if not (p / "checkpoint.pt").is_file():
            raise no_checkpoint
        signature = _signature(p / "checkpoint.pt")
        checkpoint = load_checkpoint(p / "checkpoint.pt")
        acquire_lock(p)
        folder = cls(p, resumed=True)
        folder.started = True
        if not (p / "checkpoint.pt").is_file():  # an --overwrite took it before our lock
            folder.close()
            raise no_checkpoint
        if _signature(p / "checkpoint.pt") == signature:  # else a writer replaced it meanwhile
            folder._checkpoint = checkpoint
        OPENED.append(p)
        _remove_stale_tmp(p)
        return folder

    def _clear(self) -> None:
        for name in RUN_FILES:
            (self.path / name).unlink(missing_ok=True)
        for name in RUN_DIRS:
            shutil.rmtree(self.path / name, ignore_errors=True)

    def log_to_tensorboard(self, history: dict[str, list[dict[str, Any]]], start_epoch: int
                           ) -> None:
        """Mirror every epoch's log records to ``RUN/tb`` (the JSONL logs stay the source of
        truth). A resumed run drops what the interrupted process logged past its checkpoint;
        a fresh one writes the records it already has (the initial architecture)."""
        if not self.writer:
            return
        from nasp.tensorboard import TensorBoardLogger

        self.tensorboard = TensorBoardLogger(self.path, purge_step=start_epoch + 1
                                             if self.resumed else 0)
        if not self.resumed:
            for record in history.get("arch.jsonl", []):
                self.tensorboard.log_epoch(arch=record)

    def close(self) -> None:
        if self.tensorboard is not None:
            self.tensorboard.close()
            self.tensorboard = None
        if self.started:
            self.started = False
            release_lock(self.path)

    def __enter__(self) -> RunFolder:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # files ------------------------------------------------------------------------------------
    def __truediv__(self, name: str) -> Path:
        return self.path / name

    def write_json(self, name: str, obj: Any) -> None:
        if self.writer:
            write_json(self.path / name, obj)

    def write_text(self, name: str, text: str) -> None:
        if self.writer:
            atomic_write_bytes(self.path / name, text.encode())

    def read_json(self, name: str) -> Any:
        return read_json(self.path / name)

    def log(self, name: str) -> JsonlLog:
        return JsonlLog(self.path / name)

    def save_checkpoint(self, state: dict[str, Any], name: str = "checkpoint.pt") -> None:
        if self.writer:
            save_checkpoint(self.path / name, state)

    def load_checkpoint(self, device: str | torch.device = "cpu",
                        name: str = "checkpoint.pt") -> dict[str, Any]:
        if name == "checkpoint.pt" and self._checkpoint is not None:
            checkpoint, self._checkpoint = self._checkpoint, None
            if torch.device(device).type == "cpu":
                return checkpoint
        return load_checkpoint(self.path / name, device)

    def end_epoch(self, state: dict[str, Any], logs: dict[str, dict[str, Any]]) -> None:
        """Checkpoint first, then the epoch's log lines: the logs are never ahead of it.

        ``state["history"]`` must hold every log's records up to this epoch (``sync_logs``
        rebuilds the files from it on resume)."""
        if not self.writer:
            return
        self.save_checkpoint(state)
        for name, record in logs.items():
            self.log(name).append(record)
        if self.tensorboard is not None:
            self.tensorboard.log_epoch(logs.get("metrics.jsonl"), logs.get("arch.jsonl"))

    def sync_logs(self, history: dict[str, list[dict[str, Any]]]) -> None:
        """Make each log hold exactly the checkpoint's records (drops torn or orphan lines)."""
        if self.writer:
            for name, records in history.items():
                self.log(name).rewrite(records)
