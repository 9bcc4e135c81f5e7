"""Run folders: resolved config, JSONL histories, atomic checkpoints, random states.

Readers (plots, tables, reports) rely only on these files; see docs/run-folder.md.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from nasp.errors import NaspError


def prepare_run_dir(path: str | os.PathLike, resume: bool = False, overwrite: bool = False) -> Path:
    """Create (or reopen) a run folder, failing early and clearly when it cannot be written."""
    p = Path(path)
    if not resume and p.exists() and (p / "checkpoint.pt").exists() and not overwrite:
        raise NaspError(f"run folder {p} already holds a run",
                        f"pass --resume {p} to continue it, --overwrite to replace it, "
                        "or choose another --out")
    try:
        p.mkdir(parents=True, exist_ok=True)
        probe = p / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as e:
        raise NaspError(f"cannot write to run folder {p}: {e.strerror}",
                        "choose a writable --out folder") from None
    return p


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over the target: a crash
    at any moment leaves either the old file or the new one, never a torn one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(Path(path), (json.dumps(obj, indent=2, default=_jsonable) + "\n").encode())


def read_json(path: Path) -> Any:
    p = Path(path)
    if not p.exists():
        raise NaspError(f"{p} does not exist", "check the run folder path")
    try:
        return json.loads(p.read_text())
    except json.JSONDecodeError as e:
        raise NaspError(f"{p} is not valid JSON ({e})", "the file is damaged; re-run") from None


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


class JsonlLog:
    """Append-only per-epoch history; on resume, lines of epochs not yet checkpointed are
    dropped so the file matches the checkpoint exactly."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def truncate_from(self, epoch: int) -> None:
        if not self.path.exists():
            return
        keep = [line for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("epoch", -1) < epoch]
        atomic_write_bytes(self.path, "".join(line + "\n" for line in keep).encode())

    def append(self, record: dict[str, Any]) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record, default=_jsonable) + "\n")
            f.flush()

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "numpy": np.random.get_state(),
             "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    np.random.set_state(state["numpy"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def save_checkpoint(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` into memory, then an atomic write."""
    import io

    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(Path(path), buf.getvalue())


def load_checkpoint(path: Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    p = Path(path)
    if not p.exists():
        raise NaspError(f"no checkpoint at {p}", "resume a folder written by nasp search/train")
    try:
        return torch.load(p, map_location=map_location, weights_only=False)
    except Exception as e:  # a damaged file: say so instead of a pickle traceback
        raise NaspError(f"checkpoint {p} cannot be read ({type(e).__name__})",
                        "the file is damaged; start the run again") from None
