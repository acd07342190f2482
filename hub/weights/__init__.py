"""Base-model weights from where users keep them: a local folder, a Hugging Face repo id, or a ``.gguf`` file.

:func:`resolve_weights` turns what a user typed after ``--weights`` into a local folder the inference
service, PEFT and the testbed load (``config.json``, tokenizer, safetensors):

- an existing folder is used where it is;
- ``org/name[@revision]`` (or ``hf:org/name@revision``) is downloaded once into ``<root>/hf/`` at the
  revision's commit sha (:mod:`hub.weights.hf`);
- a ``.gguf`` file is dequantized once into ``<root>/gguf/`` (:mod:`hub.weights.gguf`).

Everything Loom downloads or converts lives under ``root`` (the data directory's ``weights/``). No DB here:
the base-model service records what this returns. Heavy imports (transformers, huggingface_hub) are lazy.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError

if TYPE_CHECKING:
    from huggingface_hub import HfApi

HF_PREFIX = "hf:"


@dataclass(frozen=True)
class ResolvedWeights:
    """Where a base's weights are, locally, and where they came from.

    Attributes:
        folder: the local folder to load (absolute).
        config: its ``config.json`` (None when the folder has none).
        source: provenance: ``{"kind": "folder"}``, ``{"kind": "hf", "repo_id", "revision", "sha"}`` or
            ``{"kind": "gguf", "file", "sha256", "architecture"}``.
    """

    folder: Path
    config: dict[str, Any] | None
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def pinned_revision(self) -> str | None:
        """The commit sha of a Hugging Face download, else None."""
        return self.source.get("sha") if self.source.get("kind") == "hf" else None


def weights_kind(spec: str) -> str:
    """``"folder"``, ``"gguf"`` or ``"hf"``: how :func:`resolve_weights` reads ``spec``.

    Raises:
        InvalidInputError: a path that does not exist, a file that is not a ``.gguf``, or text that is neither a
            path nor a repo id.
    """
    from hub.hf_sync.refs import parse_repo_ref

    text = spec.strip()
    if not text:
        raise InvalidInputError("weights must not be empty", field="weights")
    if text.startswith(HF_PREFIX):
        return "hf"
    p = Path(text).expanduser()
    if p.is_dir():
        return "folder"
    if p.is_file():
        if p.suffix.lower() == ".gguf":
            return "gguf"
        raise InvalidInputError(f"weights {spec!r} is a file but not a .gguf file; give a folder "
                                "(save_pretrained output), a .gguf file or a Hugging Face repo id", field="weights")
    if p.suffix.lower() == ".gguf":
        raise InvalidInputError(f"GGUF file {spec!r} does not exist", field="weights")
    if text.startswith(("/", ".", "~")):
        raise InvalidInputError(f"weights folder {spec!r} does not exist", field="weights")
    try:
        parse_repo_ref(text)
    except InvalidInputError:
        raise InvalidInputError(f"weights {spec!r} is neither an existing folder, a .gguf file nor a Hugging Face "
                                "repo id (org/name[@revision])", field="weights") from None
    return "hf"


def read_config(folder: Path) -> dict[str, Any] | None:
    """``folder/config.json`` parsed, None when there is none.

    Raises:
        InvalidInputError: a config.json that is not a JSON object.
    """
    path = folder / "config.json"
    if not path.is_file():
        return None
    try:
        cfg = json.loads(path.read_text())
    except (ValueError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"{path} is not valid JSON: {e}", field="weights") from None
    if not isinstance(cfg, dict):
        raise InvalidInputError(f"{path} is not a JSON object", field="weights")
    return cfg


def resolve_weights(
    spec: str,
    root: str | os.PathLike[str],
    *,
    hf_api: Callable[[], HfApi] | None = None,
    validate: Callable[[dict[str, Any]], Any] | None = None,
) -> ResolvedWeights:
    """A local folder for the weights named by ``spec`` (downloading or converting them once into ``root``).

    Args:
        spec: a folder, a ``.gguf`` file, or ``org/name[@revision]``.
        root: where downloads (``hf/``) and conversions (``gguf/``) go.
        hf_api: builds the ``HfApi`` (endpoint, token) for Hugging Face ids.
        validate: called with the model's config.json (before a Hub download fetches the weights); raises
            to refuse the model.

    Raises:
        InvalidInputError / NotFoundError / AuthenticationError / UpstreamError: see :func:`weights_kind`,
            :func:`hub.weights.hf.download_base` and :func:`hub.weights.gguf.convert_gguf`.
    """
    kind = weights_kind(spec)
    base = Path(root)
    if kind == "hf":
        from hub.weights.hf import download_base

        if hf_api is None:
            raise InvalidInputError("this hub cannot download from the Hugging Face Hub", field="weights")
        got = download_base(hf_api(), spec.strip(), base / "hf",
                            validate=_named(validate, f"Hugging Face repository {spec.strip()}"))
        return ResolvedWeights(got.folder.resolve(), got.config, {"kind": "hf", "repo_id": got.repo_id,
                                                                   "revision": got.revision, "sha": got.sha})
    if kind == "gguf":
        from hub.weights.gguf import convert_gguf

        path = Path(spec.strip()).expanduser().resolve()
        conv = convert_gguf(path, base / "gguf")
        config = read_config(conv.folder)
        if config is not None and validate is not None:
            _named(validate, f"GGUF file {path.name}")(config)
        return ResolvedWeights(conv.folder.resolve(), config, {"kind": "gguf", "file": str(path),
                                                               "sha256": conv.sha256, "architecture": conv.architecture})
    folder = Path(spec.strip()).expanduser().resolve()
    config = read_config(folder)
    if config is not None and validate is not None:
        _named(validate, f"weights folder {folder}")(config)
    return ResolvedWeights(folder, config, {"kind": "folder"})


def _named(validate: Callable[[dict[str, Any]], Any] | None, label: str) -> Callable[[dict[str, Any]], Any] | None:
    """``validate`` whose refusals name the weights (``label: ...``)."""
    if validate is None:
        return None

    def run(config: dict[str, Any]) -> Any:
        try:
            return validate(config)
        except InvalidInputError as e:
            raise InvalidInputError(f"{label}: {e.message}", field="weights") from None

    return run
