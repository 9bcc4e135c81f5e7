"""``nasp export``: a trained network as ONNX, a ``torch.export`` program, or safetensors.

Every export is checked before the command reports success: the exported model runs on a
batch of 3 inputs (seeded normal noise, the scale of normalised images; the file was traced
with a batch of 2, so the check also exercises the dynamic batch dimension) and its outputs
must match PyTorch's within ``|exported - pytorch| <= ATOL + RTOL * |pytorch|`` elementwise
(``RTOL = ATOL = 1e-4``, float32).

* ``onnx``: the network's forward on preprocessed images (input ``images``, float32
  (N, C, H, W) after ``nasp.load``'s preprocessing; output ``logits``), batch dimension
  dynamic, opset 17. Written by torch's TorchScript-based exporter, which needs only the
  ``onnx`` package (``pip install 'nasp[export]'``); the ``torch.export``-based exporter,
  torch's default from 2.9, needs ``onnxscript`` and ``onnx-ir`` on top.
  The network record (genotype, mean/std, classes, sizes) is stored as JSON in the model's
  metadata under ``nasp``. Checked with onnxruntime where installed, else with the ``onnx``
  package's reference evaluator (slower: seconds for a paper-size network).
* ``pt2``: a ``torch.export`` program (``torch.export.load(FILE).module()(images)``), batch
  dimension dynamic; the record is in the archive as ``extra_files["nasp.json"]``.
* ``safetensors``: the weights (``FILE``) and, beside it, ``FILE`` with suffix ``.json``: the
  record plus ``weights`` (the file name) and ``tied`` (names stored once for tensors that
  share memory: a language model's decoder weight is its embedding). ``nasp.load`` reads the
  pair back. Language models export only this way.
"""

from __future__ import annotations

import inspect
import json
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from nasp.errors import NaspError
from nasp.export.load import (
    EXPORT_FORMAT,
    EXPORT_VERSION,
    LoadedRun,
    load,
    load_safetensors_export,
    sidecar_path,
)
from nasp.export.safetensors import write_safetensors

FORMATS = ("onnx", "pt2", "safetensors")
SUFFIXES = {".onnx": "onnx", ".pt2": "pt2", ".safetensors": "safetensors"}
RTOL = ATOL = 1e-4
TRACE_BATCH, CHECK_BATCH = 2, 3
ONNX_OPSET = 17


@dataclass
class ExportResult:
    """What an export wrote and how it was checked."""

    format: str
    files: list[Path]
    checked_with: str
    max_abs_diff: float
    batch: int = CHECK_BATCH

    def summary(self) -> str:
        files = ", ".join(str(f) for f in self.files)
        return (f"wrote {files}; checked with {self.checked_with} on a batch of {self.batch}: "
                f"max |difference| {self.max_abs_diff:.2e} (tolerance {ATOL:g} + "
                f"{RTOL:g}·|output|)")


def format_for(path: str | os.PathLike, fmt: str | None) -> str:
    """The format named, or the one the file's suffix implies."""
    if fmt is not None:
        if fmt not in FORMATS:
            raise NaspError(f"unknown export format {fmt!r}", f"use one of: {', '.join(FORMATS)}")
        return fmt
    suffix = Path(path).suffix.lower()
    if suffix not in SUFFIXES:
        raise NaspError(f"cannot tell the format from {Path(path).name!r}",
                        "pass --format onnx, pt2 or safetensors (or name the file .onnx, .pt2 "
                        "or .safetensors)")
    return SUFFIXES[suffix]


def check_batch(record: dict[str, Any], n: int = CHECK_BATCH, seed: int = 0) -> torch.Tensor:
    """Seeded inputs in the network's normalised input space."""
    g = torch.Generator().manual_seed(seed)
    if record["task"] == "cnn":
        return torch.randn(n, *record["input_shape"], generator=g)
    return torch.randint(0, record["ntokens"], (5, n), generator=g)


def _forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        if isinstance(x, torch.Tensor) and x.dtype == torch.long:  # a language model
            return model(x, model.init_hidden(x.shape[1]))[0]
        return model(x)


def compare(reference: torch.Tensor, exported: torch.Tensor, what: str, path: Path) -> float:
    """Max |difference|; a ``NaspError`` when any element is outside the tolerance."""
    exported = torch.as_tensor(exported).to(reference.dtype)
    if exported.shape != reference.shape:
        raise NaspError(f"the {what} output has shape {tuple(exported.shape)}, PyTorch's "
                        f"{tuple(reference.shape)}", f"{path} is kept for inspection")
    diff = (exported - reference).abs()
    bad = diff > ATOL + RTOL * reference.abs()
    worst = float(diff.max()) if diff.numel() else 0.0
    if bool(bad.any()):
        raise NaspError(f"the {what} output differs from PyTorch's by up to {worst:.3g}, above "
                        f"the tolerance {ATOL:g} + {RTOL:g}·|output|",
                        f"{path} is kept for inspection; please report this")
    return worst


def _onnx_export_kwargs() -> dict[str, Any]:
    # torch >= 2.9 defaults to the torch.export-based exporter, which needs onnxscript; the
    # TorchScript-based one needs only the onnx package (the `dynamo` flag exists from 2.5)
    params = inspect.signature(torch.onnx.export).parameters
    return {"dynamo": False} if "dynamo" in params else {}


def export_onnx(run: LoadedRun, out: Path) -> ExportResult:
    try:
        import onnx
    except ImportError:
        raise NaspError("ONNX export needs the onnx package",
                        "pip install 'nasp[export]' (or pip install onnx)") from None
    model = run.model
    example = check_batch(run.record, TRACE_BATCH, seed=1)
    with warnings.catch_warnings(), torch.no_grad():  # an inference graph
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notices
        torch.onnx.export(model, (example,), str(out), input_names=["images"],
                          output_names=["logits"], opset_version=ONNX_OPSET,
                          dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                          **_onnx_export_kwargs())
    proto = onnx.load(str(out))
    entry = proto.metadata_props.add()
    entry.key, entry.value = "nasp", json.dumps(run.record)
    onnx.save(proto, str(out))
    x = check_batch(run.record)
    reference = _forward(model, x)
    try:
        import onnxruntime as ort

        session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
        outputs, checker = session.run(None, {"images": x.numpy()}), "onnxruntime"
    except ImportError:
        from onnx.reference import ReferenceEvaluator

        outputs = ReferenceEvaluator(proto).run(None, {"images": x.numpy()})
        checker = "the onnx reference evaluator (onnxruntime is not installed)"
    diff = compare(reference, torch.from_numpy(outputs[0]), "ONNX", out)
    return ExportResult("onnx", [out], checker, diff)


def export_pt2(run: LoadedRun, out: Path) -> ExportResult:
    model = run.model
    example = check_batch(run.record, TRACE_BATCH, seed=1)
    batch = torch.export.Dim("batch", min=1)
    with torch.no_grad():  # an inference graph
        program = torch.export.export(model, (example,), dynamic_shapes=({0: batch},))
    torch.export.save(program, str(out), extra_files={"nasp.json": json.dumps(run.record)})
    x = check_batch(run.record)
    loaded = torch.export.load(str(out)).module()
    diff = compare(_forward(model, x), _forward(loaded, x), "torch.export", out)
    return ExportResult("pt2", [out], "torch.export.load", diff)


def _dedupe(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors that share memory stored once: ``tied[name] = stored name``."""
    kept: dict[str, torch.Tensor] = {}
    tied: dict[str, str] = {}
    seen: dict[tuple, str] = {}
    for name, t in state.items():
        key = (t.data_ptr(), t.dtype, tuple(t.shape), tuple(t.stride())) if t.numel() else None
        if key is not None and key in seen:
            tied[name] = seen[key]
            continue
        if key is not None:
            seen[key] = name
        kept[name] = t
    return kept, tied


def export_safetensors(run: LoadedRun, out: Path) -> ExportResult:
    tensors, tied = _dedupe(run.model.state_dict())
    write_safetensors(out, tensors, {"format": "pt"})
    meta = {"format": EXPORT_FORMAT, "version": EXPORT_VERSION, "weights": out.name,
            "tied": tied, "epoch": run.epoch, **run.record}
    json_path = sidecar_path(out)
    json_path.write_text(json.dumps(meta, indent=1) + "\n")
    rebuilt = load_safetensors_export(json_path).model
    x = check_batch(run.record)
    diff = compare(_forward(run.model, x), _forward(rebuilt, x), "safetensors", out)
    return ExportResult("safetensors", [out, json_path], "nasp's reader, rebuilt network", diff)


def export_run(run: str | os.PathLike, out: str | os.PathLike, fmt: str | None = None,
               last: bool = False) -> ExportResult:
    """Export the trained network of a ``nasp train`` run folder and check the result."""
    from nasp.files import check_output

    path = Path(out)
    fmt = format_for(path, fmt)
    check_output(path, "-o")  # before the work: a place nothing can be written is refused now
    loaded = load(run, last=last, device="cpu")
    if loaded.task != "cnn" and fmt != "safetensors":
        raise NaspError(f"language models export as safetensors only, not {fmt}",
                        "use --format safetensors")
    path.parent.mkdir(parents=True, exist_ok=True)
    exporters = {"onnx": export_onnx, "pt2": export_pt2, "safetensors": export_safetensors}
    return exporters[fmt](loaded, path)
