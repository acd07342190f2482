"""Registered base models: their config.json, where their weights live, and their linear shapes.

Shapes are computed from ``config.json`` alone by building the model on the meta device (no
weights, no memory), then reading every ``nn.Linear``; they are cached per (id, revision).
"""

from __future__ import annotations

import json
import threading
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import ConflictError, InvalidInputError, NotFoundError
from hub.db.models import BaseModel
from hub.repositories import base_models as repo

MAX_CONFIG_BYTES = 1024 * 1024


def linear_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``module path -> (out_features, in_features)`` of every nn.Linear of the causal LM ``config``.

    Raises:
        InvalidInputError: the config has no known ``model_type`` or transformers cannot build it.
    """
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg_dict = dict(config)
    model_type = cfg_dict.pop("model_type", None)
    if not model_type:
        raise InvalidInputError("config.json has no model_type", field="config")
    try:
        cfg = AutoConfig.for_model(model_type, **cfg_dict)
        with torch.device("meta"):
            model = AutoModelForCausalLM.from_config(cfg)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds for a bad config
        raise InvalidInputError(f"config.json does not describe a causal LM transformers can build: {e}") from None
    return {
        name: (int(m.out_features), int(m.in_features))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    }


class BaseModelService:
    """Register, list and look up base models; shape checks for publishing."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self._shapes: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def register(self, model_id: str, config: bytes | dict[str, Any], *, revision: str = "main",
                 weights: str | None = None) -> BaseModel:
        """Register ``model_id`` at ``revision`` with its config.json (validated by building it on meta).

        Raises:
            InvalidInputError: a bad id, config or weights location.
            ConflictError: this id and revision are already registered.
        """
        if not model_id or len(model_id) > 256 or any(c.isspace() for c in model_id) or ".." in model_id:
            raise InvalidInputError(f"base model id {model_id!r} is not valid", field="id", value=model_id)
        if not revision or len(revision) > 128 or any(c.isspace() for c in revision):
            raise InvalidInputError(f"revision {revision!r} is not valid", field="revision", value=revision)
        if weights is not None and len(weights) > 1024:
            raise InvalidInputError("weights location is longer than 1024 characters", field="weights")
        if isinstance(config, bytes | bytearray):
            if len(config) > MAX_CONFIG_BYTES:
                raise InvalidInputError(f"config.json is over {MAX_CONFIG_BYTES} bytes", field="config")
            try:
                config = json.loads(config)
            except (json.JSONDecodeError, UnicodeDecodeError) as e:
                raise InvalidInputError(f"config.json is not valid JSON: {e}", field="config") from None
        if not isinstance(config, dict):
            raise InvalidInputError("config.json must be a JSON object", field="config")
        shapes = linear_shapes(config)
        try:
            with self.sessions.begin() as s:
                if repo.get_base(s, model_id, revision) is not None:
                    raise ConflictError(f"base model {model_id}@{revision} is already registered")
                row = BaseModel(model_id=model_id, revision=revision, config=config, weights=weights)
                s.add(row)
        except IntegrityError:
            raise ConflictError(f"base model {model_id}@{revision} is already registered") from None
        with self._lock:
            self._shapes[(model_id, revision)] = shapes
        return row

    def list(self) -> list[BaseModel]:
        with self.sessions() as s:
            return repo.list_bases(s)

    def get(self, model_id: str, revision: str | None = None) -> BaseModel:
        with self.sessions() as s:
            row = repo.get_base(s, model_id, revision)
        if row is None:
            at = f"@{revision}" if revision else ""
            raise NotFoundError(f"base model {model_id}{at} is not registered")
        return row

    def find(self, model_id: str, revision: str | None = None) -> BaseModel | None:
        """The registered base for an adapter's base id/revision (falling back to any revision), or None."""
        with self.sessions() as s:
            return repo.get_base(s, model_id, revision) or (repo.get_base(s, model_id) if revision else None)

    def shapes(self, base: BaseModel) -> dict[str, tuple[int, int]]:
        """Cached linear shapes of ``base``."""
        key = (base.model_id, base.revision)
        with self._lock:
            hit = self._shapes.get(key)
        if hit is None:
            hit = linear_shapes(base.config)
            with self._lock:
                self._shapes[key] = hit
        return hit
