"""Check a safetensors file's header before any tensor is read.

The header is a little-endian u64 length followed by that many bytes of JSON mapping tensor
names to ``{"dtype", "shape", "data_offsets"}``. We check it is well formed, that every dtype is
a float type LoRA weights may have, and that the declared offsets tile the data section exactly,
so a truncated or crafted file is refused with a message instead of being read.
"""

from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

from hub.core.errors import InvalidAdapterError, PayloadTooLargeError

#: dtypes accepted for LoRA weights and their sizes in bytes.
FLOAT_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2}
#: a header larger than this is refused (safetensors itself caps at 100 MB).
MAX_HEADER_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


def check_safetensors_header(path: str | os.PathLike[str], max_bytes: int | None = None,
                             label: str | None = None) -> dict[str, TensorInfo]:
    """Parse and validate the header of ``path``; return tensor infos by name. ``label``: the file's name in
    errors (an upload is checked in a temporary file whose name means nothing to its sender).

    Raises:
        PayloadTooLargeError: the file is larger than ``max_bytes``.
        InvalidAdapterError: not a safetensors file, bad JSON, a non-float dtype, offsets
            outside the file, overlapping or with gaps, or sizes that disagree with shapes.
    """
    p = Path(path)
    size = p.stat().st_size
    name = label or p.name
    if max_bytes is not None and size > max_bytes:
        raise PayloadTooLargeError(f"{name} is {size} bytes, over the limit of {max_bytes} bytes")
    if size < 8:
        raise InvalidAdapterError(f"{name} is not a safetensors file: {size} bytes, too short for a header")
    with p.open("rb") as f:
        (hlen,) = struct.unpack("<Q", f.read(8))
        if hlen > MAX_HEADER_BYTES or 8 + hlen > size:
            raise InvalidAdapterError(
                f"{name} is not a valid safetensors file: header length {hlen} does not fit a {size}-byte file"
            )
        raw = f.read(hlen)
    try:
        header = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise InvalidAdapterError(f"{name} is not a valid safetensors file: header is not JSON ({e})") from None
    except RecursionError:  # nested thousands deep: no safetensors header is
        raise InvalidAdapterError(f"{name} is not a valid safetensors file: header JSON nests too deep") from None
    if not isinstance(header, dict):
        raise InvalidAdapterError(f"{name}: safetensors header must be a JSON object")
    header.pop("__metadata__", None)
    data_len = size - 8 - hlen
    infos: dict[str, TensorInfo] = {}
    for key, meta in header.items():
        if not isinstance(meta, dict) or not {"dtype", "shape", "data_offsets"} <= meta.keys():
            raise InvalidAdapterError(f"{name}: tensor {key!r} has a malformed header entry")
        dtype = meta["dtype"]
        if dtype not in FLOAT_DTYPES:
            raise InvalidAdapterError(
                f"{name}: tensor {key!r} has dtype {dtype}; LoRA weights must be one of "
                f"{', '.join(FLOAT_DTYPES)}"
            )
        shape = meta["shape"]
        offs = meta["data_offsets"]
        if (
            not isinstance(shape, list)
            or not all(isinstance(s, int) and s >= 0 for s in shape)
            or not isinstance(offs, list)
            or len(offs) != 2
            or not all(isinstance(o, int) for o in offs)
        ):
            raise InvalidAdapterError(f"{name}: tensor {key!r} has a malformed shape or data_offsets")
        start, end = offs
        if not 0 <= start <= end <= data_len:
            raise InvalidAdapterError(
                f"{name}: tensor {key!r} declares bytes {start}..{end} outside the {data_len}-byte data section"
            )
        if end - start != math.prod(shape) * FLOAT_DTYPES[dtype]:
            raise InvalidAdapterError(
                f"{name}: tensor {key!r} declares shape {shape} {dtype} but {end - start} bytes"
            )
        infos[key] = TensorInfo(key, dtype, tuple(shape), start, end)
    # The data section must be tiled exactly: no overlaps, no gaps, no trailing bytes.
    pos = 0
    for info in sorted(infos.values(), key=lambda i: (i.start, i.end)):
        if info.start != pos:
            raise InvalidAdapterError(f"{name}: tensor data overlaps or leaves a gap at byte {pos}")
        pos = info.end
    if pos != data_len:
        raise InvalidAdapterError(f"{name}: {data_len - pos} trailing bytes after the last tensor")
    return infos
