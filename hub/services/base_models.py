"""Registered base models: their config.json, where their weights live, and their linear shapes.

Shapes are computed from ``config.json`` alone by building the model on the meta device (no
weights, no memory), then reading every ``nn.Linear``; they are cached per (id, revision).

Weights are given the way users keep them (:mod:`hub.weights`): a local folder, a Hugging Face repo id
(downloaded once into the data directory at a pinned commit sha) or a ``.gguf`` file (dequantized once into
the data directory). ``config.json`` comes from the weights when the caller gives none. A base whose
weights cannot be had or are not a causal LM is not registered.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import ConflictError, InvalidInputError, NotFoundError, PermissionDeniedError
from hub.core.imports import import_lock, import_once
from hub.db.models import BaseModel, User
from hub.repositories import base_models as repo

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi

MAX_CONFIG_BYTES = 1024 * 1024


def linear_shapes(config: dict[str, Any]) -> dict[str, tuple[int, int]]:
    """``module path -> (out_features, in_features)`` of every nn.Linear of the causal LM ``config``.

    Raises:
        InvalidInputError: the config has no known ``model_type`` or transformers cannot build it.
    """
    import torch

    auto_config, auto_model = import_once("transformers", "AutoConfig", "AutoModelForCausalLM")
    cfg_dict = dict(config)
    model_type = cfg_dict.pop("model_type", None)
    if not model_type:
        raise InvalidInputError("config.json has no model_type", field="config")
    try:
        cfg = auto_config.for_model(model_type, **cfg_dict)
        with import_lock(), torch.device("meta"):  # the first build of a model type imports its module lazily
            model = auto_model.from_config(cfg)
    except Exception as e:  # noqa: BLE001 - transformers raises many kinds for a bad config
        why = str(e).split(" Model type should be one of")[0].splitlines()[0][:300] if str(e) else type(e).__name__
        raise InvalidInputError(f"config.json (model_type {model_type!r}) does not describe a causal LM "
                                f"transformers can build: {why}", field="config") from None
    return {
        name: (int(m.out_features), int(m.in_features))
        for name, m in model.named_modules()
        if isinstance(m, torch.nn.Linear)
    }


def check_confined(weights: str, roots: Sequence[Path]) -> None:
    """Refuse a local ``weights`` path (a folder or a .gguf file) outside ``roots``; Hugging Face ids pass.

    Raises:
        InvalidInputError: a path outside every root (the message names neither the path nor whether it exists).
    """
    from hub.weights import HF_PREFIX

    text = weights.strip()
    if text.startswith(HF_PREFIX):
        return
    p = Path(text).expanduser()
    pathlike = text.startswith(("/", ".", "~", "\\")) or text.lower().endswith(".gguf") or p.exists()
    if not pathlike:
        return  # a Hugging Face repo id
    real = p.resolve()
    if not any(real.is_relative_to(r.resolve()) for r in roots):
        raise InvalidInputError("weights must be a Hugging Face repo id, or a folder or .gguf file under the hub's "
                                "data directory or LOOM_WEIGHTS_ROOTS", field="weights")


class BaseModelService:
    """Register, list and look up base models; shape checks for publishing.

    Args:
        sessions: the DB session factory.
        weights_root: where Hugging Face downloads and GGUF conversions go (the data directory's ``weights/``);
            None: only local folders are accepted as weights.
        hf_api: builds the ``HfApi`` used for Hugging Face ids (endpoint and token from settings).
    """

    def __init__(self, sessions: sessionmaker[Session], weights_root: Path | None = None,
                 hf_api: Callable[[], HfApi] | None = None) -> None:
        self.sessions = sessions
        self.weights_root = weights_root
        self.hf_api = hf_api
        self._shapes: dict[tuple[str, str], dict[str, tuple[int, int]]] = {}
        self._lock = threading.Lock()

    def register(self, model_id: str, config: bytes | dict[str, Any] | None = None, *, revision: str | None = None,
                 weights: str | None = None, owner: User | None = None,
                 allowed_roots: Sequence[Path] | None = None) -> BaseModel:
        """Register ``model_id`` at ``revision`` with its config.json (validated by building it on meta).

        Args:
            config: the model's config.json; None: the one the weights carry.
            revision: the registered revision; None: the pinned commit sha of Hugging Face weights, else ``main``.
            weights: a local folder, a ``.gguf`` file or a Hugging Face ``org/name[@revision]``.
            owner: the API user registering it (None: the operator, from a local command); a base id belongs to
                whoever registered it first: only they add revisions.
            allowed_roots: folders and .gguf files must lie under one of these (symlinks resolved), checked before
                anything is read, so a refusal says nothing of what exists; None: anywhere (local commands).

        Raises:
            InvalidInputError: a bad id, config or weights (missing, not a causal LM, not loadable).
            NotFoundError: a Hugging Face repo or revision that does not exist.
            UpstreamError: the Hugging Face Hub could not be reached.
            ConflictError: this id and revision are already registered.
            PermissionDeniedError: ``owner`` is not the owner of the revisions already registered under this id.
        """
        if not model_id or len(model_id) > 256 or any(c.isspace() for c in model_id) or ".." in model_id:
            raise InvalidInputError(f"base model id {model_id!r} is not valid", field="id", value=model_id)
        if revision is not None and (not revision or len(revision) > 128 or any(c.isspace() for c in revision)):
            raise InvalidInputError(f"revision {revision!r} is not valid", field="revision", value=revision)
        if weights is not None and len(weights) > 1024:
            raise InvalidInputError("weights location is longer than 1024 characters", field="weights")
        if weights is not None and allowed_roots is not None:
            check_confined(weights, allowed_roots)
        cfg = _parse_config(config) if config is not None else None
        if cfg is None and weights is None:
            raise InvalidInputError("give the model's config.json or weights that carry one", field="config")
        if owner is not None:
            with self.sessions() as s:
                others = repo.owners(s, model_id) - {owner.id}
            if others:
                raise PermissionDeniedError(f"base model {model_id} was registered by another user; only they can "
                                            "register revisions of it", field="id")
        if revision is not None:
            self._refuse_registered(model_id, revision)
        checked: dict[str, dict[str, tuple[int, int]]] = {}
        if cfg is not None:
            checked["shapes"] = linear_shapes(cfg)
        source: dict[str, Any] | None = None
        folder: str | None = None
        if weights is not None:
            from hub.weights import resolve_weights, weights_kind

            if self.weights_root is None and weights_kind(weights) != "folder":
                raise InvalidInputError("this hub accepts only local folders as weights", field="weights")

            def validate(found: dict[str, Any]) -> None:
                if cfg is None:
                    checked["shapes"] = linear_shapes(found)

            got = resolve_weights(weights, self.weights_root or Path("."), hf_api=self.hf_api, validate=validate)
            if cfg is None:
                if got.config is None:
                    raise InvalidInputError(f"weights {weights!r} have no config.json; give the model's config",
                                            field="config")
                cfg = got.config
            revision = revision or got.pinned_revision
            folder, source = str(got.folder), got.source
        revision = revision or "main"
        shapes = checked.get("shapes") or linear_shapes(cfg)
        try:
            with self.sessions.begin() as s:
                self._refuse_registered(model_id, revision, s)
                row = BaseModel(model_id=model_id, revision=revision, config=cfg, weights=folder, source=source,
                                owner_id=owner.id if owner is not None else None)
                s.add(row)
        except IntegrityError:
            raise ConflictError(f"base model {model_id}@{revision} is already registered") from None
        with self._lock:
            self._shapes[(model_id, revision)] = shapes
        return row

    def _refuse_registered(self, model_id: str, revision: str, session: Session | None = None) -> None:
        if session is None:
            with self.sessions() as s:
                found = repo.get_base(s, model_id, revision) is not None
        else:
            found = repo.get_base(session, model_id, revision) is not None
        if found:
            raise ConflictError(f"base model {model_id}@{revision} is already registered")

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


def _parse_config(config: bytes | bytearray | dict[str, Any]) -> dict[str, Any]:
    if isinstance(config, bytes | bytearray):
        if len(config) > MAX_CONFIG_BYTES:
            raise InvalidInputError(f"config.json is over {MAX_CONFIG_BYTES} bytes", field="config")
        try:
            config = json.loads(config)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"config.json is not valid JSON: {e}", field="config") from None
        except RecursionError:
            raise InvalidInputError("config.json nests too deep", field="config") from None
    if not isinstance(config, dict):
        raise InvalidInputError("config.json must be a JSON object", field="config")
    return config
