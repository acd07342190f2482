"""Copy-on-write for saves: the changes made to a vector index while a snapshot of it is being serialised.

Serialising a large FAISS index takes seconds (about 2 s for 200,000 vectors on 2 busy cores). While
:meth:`hub.search.index.VectorIndex.begin_snapshot` holds it frozen, adds and removes land in an
:class:`Overlay` instead of the FAISS structures, searches merge the frozen index's hits (less the ids the
overlay replaced or removed) with an exact scan of the overlay, and the overlay is applied when the copy is
taken. So neither searches nor changes wait for serialisation, and the copy is of one consistent state.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np

from hub.search.arrays import permitted, top_k

Pairs = list[tuple[int, float]]


class Overlay:
    """Ids whose vector changed (``vecs``: new or replaced, unit vectors) and ids removed from the frozen index."""

    def __init__(self) -> None:
        self.vecs: dict[int, np.ndarray] = {}
        self.removed: set[int] = set()

    def add(self, ids: np.ndarray, vecs: np.ndarray) -> None:
        """Record ``vecs`` (normalised, ``(n, dim)``) as the vectors of ``ids``."""
        for i, v in zip(ids.tolist(), vecs, strict=True):
            self.vecs[i] = v
            self.removed.discard(i)

    def remove(self, ids: np.ndarray, in_frozen: Callable[[int], bool]) -> int:
        """Record ``ids`` as removed; returns how many were live (``in_frozen``: whether the frozen index has one)."""
        n = 0
        for i in np.unique(ids).tolist():
            frozen = in_frozen(i)
            if self.vecs.pop(i, None) is not None or (frozen and i not in self.removed):
                n += 1
            if frozen:
                self.removed.add(i)
        return n

    def hidden(self) -> set[int]:
        """Ids whose frozen-index entry is out of date (replaced or removed)."""
        return self.removed | set(self.vecs)

    def search(self, q: np.ndarray, k: int, allowed: np.ndarray | Callable[[list[int]], Iterable[int]] | None) -> Pairs:
        """Exact top-k of the overlay's vectors for the unit query ``q`` ``(1, dim)`` among the permitted ids."""
        ids = list(self.vecs)
        if allowed is not None and ids:
            if callable(allowed):
                ok = permitted(allowed, ids)
            else:
                ok = set(np.asarray(allowed).tolist())
            ids = [i for i in ids if i in ok]
        if not ids:
            return []
        scores = np.stack([self.vecs[i] for i in ids]) @ q[0]  # (n,)
        return [(ids[j], float(scores[j])) for j in top_k(scores, k)]


def merge(a: Pairs, b: Pairs, k: int) -> Pairs:
    """The ``k`` best of two hit lists, scores descending (ties by id)."""
    return sorted(a + b, key=lambda p: (-p[1], p[0]))[:k]
