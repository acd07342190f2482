"""Small array helpers of the search engine: unit-norm rows, id arrays, top-k selection; faiss, imported lazily."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from hub.core.errors import InvalidInputError


def normalize(vectors: np.ndarray) -> np.ndarray:
    """Return ``vectors`` (n, dim) as float32 with unit-norm rows (zero rows are left at zero)."""
    v = np.ascontiguousarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(v, axis=-1, keepdims=True)
    return np.ascontiguousarray(v / np.where(norms > 0, norms, 1.0), dtype=np.float32)


def as_ids(ids: Any, name: str = "ids") -> np.ndarray:
    """Return ``ids`` as a 1-D int64 array, or raise :class:`InvalidInputError` naming ``name``."""
    if isinstance(ids, set | frozenset):
        ids = sorted(ids)
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InvalidInputError(f"{name} must be 1-D, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise InvalidInputError(f"{name} must be integers, got dtype {arr.dtype}")
    return arr.astype(np.int64, copy=False)


def top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest ``scores``, best first (ties by index)."""
    if k >= scores.size:
        return np.lexsort((np.arange(scores.size), -scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return part[np.lexsort((part, -scores[part]))]


def permitted(predicate: Callable[[list[int]], Any], ids: list[int]) -> set[int]:
    """The ids of ``ids`` that a search filter ``predicate`` permits (it returns an iterable of ids), or raise
    :class:`InvalidInputError` when it answers something else."""
    answer = predicate(ids)
    if not isinstance(answer, Iterable) or isinstance(answer, str | bytes):
        raise InvalidInputError(f"the search predicate must return a set of ids, got {answer!r}")
    return {int(i) for i in answer} & set(ids)


def faiss_module() -> Any:
    """The ``faiss`` module, imported on first use (no work at import time)."""
    import faiss

    return faiss
