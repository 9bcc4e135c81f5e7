"""Reading and writing the safetensors format without the ``safetensors`` package.

The format is small enough to write directly, so exporting weights adds no dependency:

* 8 bytes: ``N``, the length of the header, unsigned 64-bit little-endian;
* ``N`` bytes: a UTF-8 JSON object. Each tensor name maps to ``{"dtype": "F32", "shape":
  [...], "data_offsets": [begin, end]}``, byte offsets into the data section (``end``
  exclusive); the optional key ``"__metadata__"`` maps to a flat object of strings. We pad the
  header with spaces to a multiple of 8 bytes so every tensor starts aligned;
* the data section: each tensor's elements, row-major, little-endian, back to back, every
  byte belonging to exactly one tensor (no gaps, no overlap).

dtype codes: F64 F32 F16 BF16 I64 I32 I16 I8 U8 BOOL. Tensors that share memory (a language
model's tied embedding and decoder) must be stored once; the caller decides which name.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import torch

from nasp.errors import NaspError

DTYPES: dict[torch.dtype, str] = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}
CODES = {code: dtype for dtype, code in DTYPES.items()}
MAX_HEADER = 100_000_000  # the reference implementation's limit


def _raw_bytes(t: torch.Tensor) -> bytes:
    flat = t.detach().to("cpu").contiguous().reshape(-1)
    if flat.dtype == torch.bool:
        flat = flat.to(torch.uint8)
    return flat.view(torch.uint8).numpy().tobytes()


def write_safetensors(path: str | os.PathLike, tensors: dict[str, torch.Tensor],
                      metadata: dict[str, str] | None = None) -> None:
    """Write ``tensors`` (and string ``metadata``) to ``path`` in the safetensors format."""
    if sys.byteorder != "little":
        raise NaspError("safetensors export needs a little-endian machine", None)
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    blobs, offset = [], 0
    for name, t in tensors.items():
        if t.dtype not in DTYPES:
            raise NaspError(f"tensor {name!r} has dtype {t.dtype}, which safetensors lacks",
                            "convert it to a supported dtype first")
        data = _raw_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def read_safetensors(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors and metadata of a safetensors file (ours or any other writer's)."""
    raw = Path(path).read_bytes()

    def bad(why: str) -> NaspError:
        return NaspError(f"{path} is not a valid safetensors file ({why})",
                         "export it again with nasp export --format safetensors")

    if len(raw) < 8:
        raise bad("too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > MAX_HEADER or 8 + n > len(raw):
        raise bad("header length out of range")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise bad("header is not JSON") from None
    metadata = header.pop("__metadata__", None) or {}
    data = memoryview(raw)[8 + n:]
    tensors: dict[str, torch.Tensor] = {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype = CODES.get(info["dtype"])
        if dtype is None:
            raise bad(f"unsupported dtype {info['dtype']}")
        if not 0 <= begin <= end <= len(data):
            raise bad(f"offsets of {name!r} out of range")
        item = torch.empty((), dtype=dtype).element_size()
        shape = [int(s) for s in info["shape"]]
        count = 1
        for s in shape:
            count *= s
        if end - begin != count * item:
            raise bad(f"size of {name!r} does not match its shape")
        chunk = bytearray(data[begin:end])  # a copy: tensors must not alias the file buffer
        if dtype == torch.bool:
            t = torch.frombuffer(chunk, dtype=torch.uint8).to(torch.bool) if count else \
                torch.empty(0, dtype=torch.bool)
        else:
            t = torch.frombuffer(chunk, dtype=dtype) if count else torch.empty(0, dtype=dtype)
        tensors[name] = t.reshape(shape)
    return tensors, {str(k): str(v) for k, v in metadata.items()}
