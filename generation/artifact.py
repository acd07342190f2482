"""Trained generators as files: ``generator.safetensors`` (tensors) + ``generator.json`` (config,
layout, per-task facts and lineage). Never pickle: loading reads JSON and safetensors only, after
checking the safetensors header.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from hub.core.errors import InvalidInputError
from hub.core.files import GENERATOR_MANIFEST, GENERATOR_TENSORS
from hub.core.provenance import ParentRef

WEIGHTS = GENERATOR_TENSORS
META = GENERATOR_MANIFEST
FORMAT_VERSION = 1


def save_artifact(folder: str | os.PathLike[str], kind: str, tensors: dict[str, torch.Tensor],
                  meta: dict[str, Any]) -> Path:
    """Write ``tensors`` and ``meta`` (plus ``kind`` and the format version) into ``folder``."""
    from safetensors.torch import save_file

    d = Path(folder)
    d.mkdir(parents=True, exist_ok=True)
    save_file({k: v.detach().contiguous().cpu().float() for k, v in tensors.items()}, str(d / WEIGHTS))
    body = {"kind": kind, "format_version": FORMAT_VERSION, **meta}
    (d / META).write_text(json.dumps(body, indent=2, sort_keys=True) + "\n")
    return d


def load_artifact(folder: str | os.PathLike[str], kind: str) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Read a generator folder written by :func:`save_artifact`.

    Raises:
        InvalidInputError: missing files, another kind, an unknown format version, or a bad header.
    """
    from safetensors.torch import load_file

    from hub.core.safetensors_check import check_safetensors_header

    d = Path(folder)
    if not (d / META).is_file() or not (d / WEIGHTS).is_file():
        raise InvalidInputError(f"{d} is not a generator folder: it needs {META} and {WEIGHTS}")
    try:
        meta = json.loads((d / META).read_text())
    except json.JSONDecodeError as e:
        raise InvalidInputError(f"{META} is not valid JSON: {e}") from None
    if meta.get("kind") != kind:
        raise InvalidInputError(f"generator folder holds a {meta.get('kind')!r} generator, expected {kind!r}")
    if meta.get("format_version") != FORMAT_VERSION:
        raise InvalidInputError(f"generator format_version {meta.get('format_version')!r} is not supported")
    check_safetensors_header(d / WEIGHTS)
    return load_file(str(d / WEIGHTS)), meta


def parents_to_json(parents: list[ParentRef] | tuple[ParentRef, ...]) -> list[dict[str, Any]]:
    return [p.to_dict() for p in parents]


def parents_from_json(rows: list[dict[str, Any]]) -> tuple[ParentRef, ...]:
    return tuple(ParentRef.from_dict(r) for r in rows)
