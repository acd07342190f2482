"""Base models for serving: a registered base's local folder -> transformers model + tokenizer.

Only bases whose ``weights`` is a local folder (``save_pretrained`` output with a tokenizer) can be
served here; an HF id gives a clear error. The model is wrapped in a
:class:`routing.batching.MixedAdapterModel` so rows of one batch may use different adapters.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidInputError
from hub.core.imports import import_once

_log = logging.getLogger(__name__)


def pick_device() -> str:
    """``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


@dataclass
class LoadedBase:
    """A served base model.

    Attributes:
        model_id / revision: the registered base.
        mixed: the model wrapped for mixed-adapter batching (owns ``mixed.model``).
        tokenizer: its tokenizer (left padding).
        context: the most tokens (prompt + completion) the model accepts.
        device: where it runs.
        load_seconds: how long loading took.
    """

    model_id: str
    revision: str
    mixed: Any
    tokenizer: Any
    context: int
    device: str
    load_seconds: float = 0.0

    @property
    def pad_id(self) -> int:
        tok = self.tokenizer
        for v in (tok.pad_token_id, tok.eos_token_id):
            if v is not None:
                return int(v)
        return 0

    @property
    def eos_id(self) -> int | None:
        cfg = getattr(self.mixed.model, "generation_config", None)
        eos = getattr(cfg, "eos_token_id", None)
        if eos is None:
            eos = self.tokenizer.eos_token_id
        if isinstance(eos, list):
            return int(eos[0]) if eos else None
        return None if eos is None else int(eos)


def weights_folder(model_id: str, weights: str | None) -> Path:
    """The local folder of a base's weights.

    Raises:
        InvalidInputError: no weights location, or one that is not a local folder (an HF id).
    """
    if not weights:
        raise InvalidInputError(f"base model {model_id} has no weights location; register it with a local folder",
                                model=model_id)
    p = Path(weights).expanduser()
    if not p.is_dir():
        _log.warning("base model %s: its weights %r are not a local folder", model_id, weights)
        raise InvalidInputError(
            f"base model {model_id}: its weights are not a local folder; only local folders (save_pretrained "
            "output with a tokenizer) can be served here", model=model_id)
    return p


def load_base(model_id: str, revision: str, weights: str | None, device: str | None = None) -> LoadedBase:
    """Load a registered base from its local folder onto ``device`` (default: :func:`pick_device`).

    Raises:
        InvalidInputError: not a local folder, or a folder transformers cannot load (model or tokenizer).
    """
    import time

    import torch
    AutoModelForCausalLM, AutoTokenizer = import_once("transformers", "AutoModelForCausalLM", "AutoTokenizer")

    from routing.batching import MixedAdapterModel

    t0 = time.perf_counter()
    folder = weights_folder(model_id, weights)
    dev = device or pick_device()
    try:
        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds
        _log.warning("base model %s: no usable tokenizer in %s: %s", model_id, folder, e)  # the path: log only
        raise InvalidInputError(f"base model {model_id}: its weights have no usable tokenizer") from None
    try:
        model = AutoModelForCausalLM.from_pretrained(str(folder), dtype="auto")
    except Exception as e:  # noqa: BLE001
        _log.warning("base model %s: transformers cannot load %s: %s", model_id, folder, e)
        raise InvalidInputError(f"base model {model_id}: transformers cannot load its weights") from None
    model.config.name_or_path = model_id  # adapters name the registered id, not the folder
    model.to(dev).eval()
    tok.padding_side = "left"
    if tok.pad_token_id is None and tok.eos_token_id is not None:
        tok.pad_token = tok.eos_token
    ctx = getattr(model.config, "max_position_embeddings", None) or getattr(tok, "model_max_length", 2048)
    if not isinstance(ctx, int) or ctx <= 0 or ctx > 10_000_000:
        ctx = 2048
    with torch.no_grad():
        mixed = MixedAdapterModel(model, tok)
    return LoadedBase(model_id=model_id, revision=revision, mixed=mixed, tokenizer=tok, context=int(ctx),
                      device=dev, load_seconds=time.perf_counter() - t0)

