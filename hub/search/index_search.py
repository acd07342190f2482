"""Top-k search inside a :class:`hub.search.index.VectorIndex`: unfiltered, over a permitted id array, or asking a
predicate about ever deeper candidate lists.

Filters never cause a "top-k then filter" shortfall: an id array becomes a FAISS ``IDSelector`` bitmap in the
search parameters (with an exact scan of the permitted vectors when the graph search comes back short, or when
so few are permitted that scanning them is cheaper); a predicate (the DB visibility check) is asked about ever
deeper candidate lists (k, 4k, 16k, ... everything), outside the index's lock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from hub.search.arrays import faiss_module, top_k
from hub.search.arrays import permitted as permitted_ids

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.rwlock import RWLock

Predicate = Callable[[list[int]], Iterable[int]]
Allowed = np.ndarray | Predicate | None

# Filters permitting at most this many ids (or this share of the index) are scanned exactly.
SMALL_SUBSET = 2048
SMALL_SUBSET_SHARE = 0.02
# Predicate deepening asks HNSW for at most this many candidates, then ranks everything exactly.
MAX_GRAPH_DEPTH = 1024
# A predicate is never asked about more ids than this at once (SQL parameter limits).
PREDICATE_BATCH = 4096


class IndexSearch:
    """The search half of :class:`hub.search.index.VectorIndex` (which provides the state annotated here)."""

    kind: str
    dim: int
    params: dict[str, int]
    _index: Any
    _labels: np.ndarray
    _dead: np.ndarray
    _pos: dict[int, int]
    _sorted: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None
    _lock: RWLock
    if TYPE_CHECKING:  # pragma: no cover
        @property
        def n_tombstones(self) -> int: ...
        def _rows(self, positions: np.ndarray) -> np.ndarray: ...
        def _pairs(self, scores: np.ndarray, pos: np.ndarray) -> list[tuple[int, float]]: ...

    def _search_index(self, q: np.ndarray, k: int, allowed: Allowed) -> list[tuple[int, float]]:
        """Top-k of the FAISS index (the frozen one during a snapshot) for the unit query ``q`` ``(1, dim)``."""
        if allowed is None:
            with self._lock.read():
                return self._search_positions(q, k, None)
        if callable(allowed):
            return self._search_predicate(q, k, allowed)
        with self._lock.read():
            return self._search_positions(q, k, self._positions_of(allowed))

    def _search_positions(self, q: np.ndarray, k: int, subset: np.ndarray | None) -> list[tuple[int, float]]:
        """Top-k among live positions (``subset``: only these live positions). Lock held."""
        n_live = len(self._pos) if subset is None else subset.size
        kk = min(k, n_live)
        if kk == 0:
            return []
        n = len(self._labels)
        if self.kind == "flat" and subset is None:
            scores, pos = self._index.search(q, kk)
            return self._pairs(scores[0], pos[0])
        if (
            subset is not None
            and self.kind != "flat"
            and (subset.size <= SMALL_SUBSET or subset.size <= SMALL_SUBSET_SHARE * n)
        ):
            return self._exact(q, kk, subset)
        faiss = faiss_module()
        keep: list[Any] = []  # keep the bitmap and selector alive during the search
        sel = None
        if subset is not None or self.n_tombstones:
            mask = np.zeros(n, dtype=bool)
            if subset is None:
                mask[~self._dead] = True
            else:
                mask[subset] = True
            bitmap = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(n, faiss.swig_ptr(bitmap))
            keep += [bitmap, sel]
        if self.kind == "flat":
            params = faiss.SearchParameters(sel=sel)
        elif self.kind == "ivf":
            params = faiss.SearchParametersIVF(sel=sel, nprobe=min(self.params["nprobe"], self._index.nlist))
        else:
            params = faiss.SearchParametersHNSW(sel=sel, efSearch=max(self.params["ef_search"], kk))
        scores, pos = self._index.search(q, kk, params=params)
        del keep
        found = self._pairs(scores[0], pos[0])
        if len(found) < kk:  # the graph or the probed cells ran dry inside a sparse filter: scan it all
            live = np.flatnonzero(~self._dead) if subset is None else subset
            return self._exact(q, kk, live)
        return found

    def _exact(self, q: np.ndarray, k: int, positions: np.ndarray) -> list[tuple[int, float]]:
        """Exact top-k over the given positions (a matrix-vector product; IVF: every cell). Lock held."""
        if self.kind == "ivf" and positions.size > SMALL_SUBSET:
            # scanning every cell of an IVF-Flat index is exact; the bitmap skips the other positions
            faiss = faiss_module()
            mask = np.zeros(len(self._labels), dtype=bool)
            mask[positions] = True
            bitmap = np.packbits(mask, bitorder="little")
            sel = faiss.IDSelectorBitmap(len(self._labels), faiss.swig_ptr(bitmap))
            params = faiss.SearchParametersIVF(sel=sel, nprobe=self._index.nlist)
            scores, pos = self._index.search(q, min(k, positions.size), params=params)
            del sel, bitmap
            return self._pairs(scores[0], pos[0])
        scores = self._rows(positions) @ q[0]  # (n_sub,)
        order = top_k(scores, k)
        return [(int(self._labels[positions[i]]), float(scores[i])) for i in order]

    def _search_predicate(self, q: np.ndarray, k: int, predicate: Predicate) -> list[tuple[int, float]]:
        """Iterative deepening: ask ``predicate`` about k, 4k, 16k ... candidates until k pass."""
        checked: set[int] = set()
        permitted: dict[int, float] = {}
        ranked_all: list[tuple[int, float]] | None = None
        depth = k
        while True:
            with self._lock.read():
                n_live = len(self._pos)
                exhaustive = depth >= n_live
                if ranked_all is not None:
                    candidates = ranked_all[:depth]
                elif exhaustive or (self.kind != "flat" and depth > MAX_GRAPH_DEPTH):
                    ranked_all = self._exact(q, n_live, np.flatnonzero(~self._dead))
                    candidates = ranked_all[:depth]
                else:
                    candidates = self._search_positions(q, depth, None)
            new = [i for i, _ in candidates if i not in checked]
            scores = dict(candidates)
            for start in range(0, len(new), PREDICATE_BATCH):  # bounded IN (...) lists for the DB
                chunk = new[start : start + PREDICATE_BATCH]
                permitted.update({i: scores[i] for i in permitted_ids(predicate, chunk)})
            checked.update(new)
            if len(permitted) >= k or exhaustive:
                best = sorted(permitted.items(), key=lambda p: (-p[1], p[0]))
                return best[:k]
            depth *= 4

    def _positions_of(self, ids: np.ndarray) -> np.ndarray:
        """Positions of the live ids among ``ids`` (others are ignored), unique. Lock held.

        Dense ids (database keys: at most ``4 * live + 1024`` wide) are looked up in a table, a gather
        (~1 ms for 250,000 ids at 1M); others by binary search over the sorted live ids.
        """
        if self._sorted is None:
            live = np.flatnonzero(~self._dead)
            order = np.argsort(self._labels[live], kind="stable")
            keys, positions = self._labels[live][order], live[order]
            table = None
            if keys.size and keys[0] >= 0 and keys[-1] < 4 * keys.size + 1024:
                table = np.full(int(keys[-1]) + 1, -1, dtype=np.int64)
                table[keys] = positions
            self._sorted = (keys, positions, table)
        keys, positions, table = self._sorted
        if keys.size == 0 or ids.size == 0:
            return np.zeros(0, dtype=np.int64)
        if ids.size > 1 and not (ids[1:] > ids[:-1]).all():  # callers often pass sorted unique ids already
            ids = np.unique(ids)
        if table is not None:
            found = table[ids[(ids >= 0) & (ids < table.size)]]
            return found[found >= 0]
        at = np.clip(np.searchsorted(keys, ids), 0, keys.size - 1)
        return positions[at[keys[at] == ids]]
