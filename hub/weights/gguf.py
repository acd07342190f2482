"""A ``.gguf`` file -> a plain safetensors folder (config, tokenizer, chat template, float weights).

transformers' GGUF loader dequantizes the file's tensors into a float model and rebuilds its tokenizer
(chat template included). The model it returns is marked as gguf-quantized and ``save_pretrained``
refuses it, so its state dict is moved into a fresh model built from the same config without
``quantization_config`` (otherwise a later ``from_pretrained`` looks for the GGUF file again), and that
model is saved. The result is a folder PEFT, the inference service and the testbed load like any base.

The conversion is done once per file content: the folder is named by the file's sha256, so the same
GGUF registered twice (or under two ids) is converted once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from hub.core.errors import InvalidInputError
from hub.core.imports import import_once

log = logging.getLogger(__name__)

GGUF_MAGIC = b"GGUF"
#: marks a finished conversion inside its folder (what it was made from)
DONE_NAME = "loom-gguf.json"


@dataclass(frozen=True)
class ConvertedGguf:
    """A GGUF file converted into a safetensors folder.

    Attributes:
        folder: the folder (config.json, tokenizer files, chat template, model.safetensors).
        sha256: the GGUF file's sha256.
        architecture: the GGUF's ``general.architecture`` (``llama``, ``qwen2`` ...).
        reused: True when an earlier conversion of the same file was reused.
    """

    folder: Path
    sha256: str
    architecture: str
    reused: bool = False


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file, read in chunks."""
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def gguf_architecture(path: Path) -> str:
    """``general.architecture`` of a GGUF file.

    Raises:
        InvalidInputError: not a GGUF file, or one without an architecture.
    """
    with path.open("rb") as f:
        if f.read(4) != GGUF_MAGIC:
            raise InvalidInputError(f"{path} is not a GGUF file (it does not start with 'GGUF')", field="weights")
    try:
        from gguf import GGUFReader
    except ImportError:  # pragma: no cover - a dependency of loom-hub
        raise InvalidInputError("reading GGUF files needs the 'gguf' package (pip install gguf)") from None
    try:
        reader = GGUFReader(str(path))
        field = reader.fields.get("general.architecture")
        arch = bytes(field.parts[field.data[0]]).decode() if field is not None else ""
    except Exception as e:  # noqa: BLE001 - gguf raises many kinds for a damaged file
        raise InvalidInputError(f"{path} is not a readable GGUF file: {e}", field="weights") from None
    if not arch:
        raise InvalidInputError(f"{path} has no general.architecture: not a model GGUF", field="weights")
    return arch


def convert_gguf(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> ConvertedGguf:
    """Dequantize ``path`` into ``root/<sha256[:16]>/`` (once; a finished folder is reused).

    The folder is written under a temporary name and renamed into place when complete, so an interrupted
    conversion leaves nothing that looks finished.

    Raises:
        InvalidInputError: not a GGUF file, an architecture transformers' GGUF loader does not support,
            or a file it cannot load.
    """
    import json

    src = Path(path).expanduser()
    if not src.is_file():
        raise InvalidInputError(f"GGUF file {str(path)!r} does not exist", field="weights")
    arch = gguf_architecture(src)
    sha = file_sha256(src)
    dest = Path(root) / sha[:16]
    if (dest / DONE_NAME).is_file():
        return ConvertedGguf(dest, sha, arch, reused=True)
    staging = dest.parent / f".{dest.name}.partial-{uuid.uuid4().hex[:12]}"
    staging.mkdir(parents=True)
    try:
        _dequantize(src, staging, arch)
        (staging / DONE_NAME).write_text(json.dumps({"gguf": src.name, "sha256": sha, "architecture": arch}) + "\n")
        try:
            os.replace(staging, dest)
        except OSError:  # converted meanwhile by another process: keep theirs
            if not (dest / DONE_NAME).is_file():
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    log.info("converted %s (%s) into %s", src, arch, dest)
    return ConvertedGguf(dest, sha, arch)


def _dequantize(src: Path, out: Path, arch: str) -> None:
    import torch
    AutoConfig, AutoModelForCausalLM, AutoTokenizer = import_once(
        "transformers", "AutoConfig", "AutoModelForCausalLM", "AutoTokenizer")

    where, name = str(src.parent), src.name
    try:
        tok = AutoTokenizer.from_pretrained(where, gguf_file=name)
        model = AutoModelForCausalLM.from_pretrained(where, gguf_file=name, dtype=torch.float32)
    except Exception as e:  # noqa: BLE001 - transformers raises ValueError, KeyError, ... for what it cannot load
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise InvalidInputError(
            f"transformers cannot load the GGUF file {src.name} (architecture {arch!r}): {first}",
            field="weights") from None
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    cfg.pop("_name_or_path", None)
    model_type = cfg.pop("model_type")
    config = AutoConfig.for_model(model_type, **cfg)
    with torch.device("meta"):
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(model.state_dict(), assign=True)  # the dequantized tensors, not copies
    plain.tie_weights()
    plain.generation_config = model.generation_config
    plain.save_pretrained(str(out))
    tok.save_pretrained(str(out))
