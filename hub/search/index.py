"""The vector index behind semantic search: FAISS, exact below a size threshold, approximate above it.

Vectors live at *positions* ``0..ntotal-1`` inside one FAISS index (``IndexFlatIP`` for exact search;
for approximate search ``IndexIVFFlat`` (an inverted file: k-means cells, a query scans the ``nprobe``
nearest cells) or ``IndexHNSWFlat``, both with the inner-product metric); ``labels[pos]`` is the
caller's int64 id. Scores are inner products of L2-normalised vectors, i.e. cosine similarity.

- IVF trains its cells (k-means on a sample) on the first :meth:`VectorIndex.add`; later adds are
  assigned to those cells, :meth:`VectorIndex.rebuild` trains afresh. It builds in seconds where HNSW
  takes minutes (benchmarks/search_bench.py), so it is the default above the exact threshold.
- Removal: the flat index compacts at once; HNSW and IVF (whose positions must stay sequential)
  keep removed positions as tombstones that every search excludes, and
  :attr:`VectorIndex.needs_rebuild` turns true when they pile up. Adding an id that exists replaces
  its vector.
- Filters never cause a "top-k then filter" shortfall: an id array becomes a FAISS ``IDSelector``
  bitmap in the search parameters (with an exact scan of the permitted vectors when the graph search
  comes back short, or when so few are permitted that scanning them is cheaper); a predicate (the DB
  visibility check) is asked about ever deeper candidate lists (k, 4k, 16k, ... everything)
  (:mod:`hub.search.index_search`).
- Thread safety: a readers-writer lock (``hub.search.rwlock``) guards the FAISS structures: searches and
  the snapshot a save serialises read together, adds and removes write alone; a predicate runs outside it.
  Persisting is two steps, :meth:`VectorIndex.snapshot` (a copy, under the read lock) and
  :meth:`IndexSnapshot.save` (the file, under no lock) (:mod:`hub.search.index_io`).

``faiss`` is imported lazily.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from hub.core.errors import InvalidInputError
from hub.search.arrays import as_ids, faiss_module, normalize
from hub.search.index_io import FORMAT_VERSION, IndexPersistence, IndexSnapshot  # noqa: F401 - re-exported
from hub.search.index_search import (  # noqa: F401 - re-exported
    MAX_GRAPH_DEPTH,
    PREDICATE_BATCH,
    SMALL_SUBSET,
    SMALL_SUBSET_SHARE,
    Allowed,
    IndexSearch,
    Predicate,
)
from hub.search.overlay import Overlay, merge
from hub.search.rwlock import RWLock

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 200
HNSW_EF_SEARCH = 256
# IVF: about sqrt(n) cells (see default_nlist), each trained on IVF_TRAIN_PER_LIST sampled vectors (faiss
# wants at least IVF_MIN_PER_LIST), a query scans the IVF_NPROBE nearest cells.
IVF_NPROBE = 32
IVF_TRAIN_PER_LIST = 64
IVF_MIN_PER_LIST = 39
KINDS = ("flat", "hnsw", "ivf")


def default_nlist(n: int) -> int:
    """The IVF cell count for ``n`` vectors: about ``sqrt(n)`` (1,000 cells of ~1,000 vectors at 1M)."""
    return max(1, round(float(np.sqrt(max(n, 1)))))


class VectorIndex(IndexSearch, IndexPersistence):
    """A mutable id -> vector index answering top-k inner-product queries, optionally filtered.

    Args:
        dim: vector dimension.
        kind: ``"flat"`` (exact), ``"ivf"`` or ``"hnsw"`` (approximate).
        m, ef_construction, ef_search: HNSW parameters (used by ``"hnsw"`` only).
        nlist, nprobe: IVF cells (fewer when the first add has under ``IVF_MIN_PER_LIST`` vectors per
            cell) and how many of them a query scans (used by ``"ivf"`` only).
        rebuild_ratio: :attr:`needs_rebuild` is true once tombstones exceed this share of positions.
    """

    def __init__(
        self,
        dim: int,
        kind: str = "flat",
        *,
        m: int = HNSW_M,
        ef_construction: int = HNSW_EF_CONSTRUCTION,
        ef_search: int = HNSW_EF_SEARCH,
        nlist: int = 1024,
        nprobe: int = IVF_NPROBE,
        rebuild_ratio: float = 0.2,
    ) -> None:
        if not isinstance(dim, int | np.integer) or dim < 1:
            raise InvalidInputError(f"dim must be a positive int, got {dim!r}")
        if kind not in KINDS:
            raise InvalidInputError(f"kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if m < 2 or ef_construction < 1 or ef_search < 1:
            raise InvalidInputError(
                f"HNSW parameters must be positive (m >= 2), got m={m}, "
                f"ef_construction={ef_construction}, ef_search={ef_search}"
            )
        if nlist < 1 or nprobe < 1:
            raise InvalidInputError(f"IVF parameters must be positive, got nlist={nlist}, nprobe={nprobe}")
        faiss = faiss_module()
        self.dim = int(dim)
        self.kind = kind
        self.params = (
            {"nlist": int(nlist), "nprobe": int(nprobe)}
            if kind == "ivf"
            else {"m": int(m), "ef_construction": int(ef_construction), "ef_search": int(ef_search)}
        )
        self.rebuild_ratio = float(rebuild_ratio)
        if kind == "flat":
            self._index = faiss.IndexFlatIP(self.dim)
        elif kind == "ivf":
            self._index = self._new_ivf(int(nlist))
        else:
            self._index = faiss.IndexHNSWFlat(self.dim, int(m), faiss.METRIC_INNER_PRODUCT)
            self._index.hnsw.efConstruction = int(ef_construction)
            self._index.hnsw.efSearch = int(ef_search)
        self._labels = np.zeros(0, dtype=np.int64)  # position -> id
        self._dead = np.zeros(0, dtype=bool)  # position -> tombstoned (HNSW only)
        self._pos: dict[int, int] = {}  # live id -> position
        # live ids sorted, their positions, and an id -> position table when the ids are dense
        self._sorted: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None
        self._lock = RWLock()
        self._overlay: Overlay | None = None  # changes made while a snapshot is serialised (hub.search.overlay)

    # ----------------------------------------------------------------- introspection
    def __len__(self) -> int:
        ov = self._overlay
        if ov is None:
            return len(self._pos)
        return len(self._pos) - len(ov.removed) + sum(1 for i in list(ov.vecs) if i not in self._pos)

    def __contains__(self, item: object) -> bool:
        if not isinstance(item, int | np.integer):
            return False
        ov, i = self._overlay, int(item)
        if ov is None:
            return i in self._pos
        return i in ov.vecs or (i in self._pos and i not in ov.removed)

    def ids(self) -> np.ndarray:
        """The live ids, int64, in insertion order (those changed during a snapshot last)."""
        with self._lock.read():
            ids = self._labels[~self._dead].copy()
            ov = self._overlay
            if ov is None:
                return ids
            hidden = ov.hidden()
            kept = [i for i in ids.tolist() if i not in hidden]
            return np.asarray(kept + list(ov.vecs), dtype=np.int64)

    @property
    def trained(self) -> bool:
        """Whether the index can hold vectors (an IVF index trains its cells on the first add)."""
        return bool(self._index.is_trained)

    @property
    def n_tombstones(self) -> int:
        """Removed vectors still held by the HNSW graph."""
        return int(self._dead.sum())

    @property
    def needs_rebuild(self) -> bool:
        """True when tombstones exceed ``rebuild_ratio`` of the stored vectors: rebuild to reclaim them."""
        return self.n_tombstones > self.rebuild_ratio * max(len(self._labels), 1)

    def vectors(self, ids: Any) -> np.ndarray:
        """The stored (normalised) vectors of ``ids``, ``(n, dim)``; unknown ids raise InvalidInputError."""
        arr = as_ids(ids)
        with self._lock.read():
            missing = [int(i) for i in arr if int(i) not in self]
            if missing:
                raise InvalidInputError(f"ids not in the index: {missing[:10]}")
            ov = self._overlay
            if ov is not None and any(int(i) in ov.vecs for i in arr):
                return np.stack([ov.vecs[int(i)] if int(i) in ov.vecs else self._rows(
                    np.asarray([self._pos[int(i)]], dtype=np.int64))[0] for i in arr]).astype(np.float32)
            return self._rows(np.asarray([self._pos[int(i)] for i in arr], dtype=np.int64)).copy()

    # ----------------------------------------------------------------- updates
    def add(self, ids: Any, vectors: Any) -> None:
        """Add (or replace) vectors.

        Args:
            ids: int64 ``(n,)``, unique.
            vectors: ``(n, dim)``; normalised here, so scores are cosine similarities.

        Raises:
            InvalidInputError: wrong shapes or dtypes, duplicate ids, or non-finite values; nothing
                is added then.
        """
        arr = as_ids(ids)
        vecs = np.asarray(vectors)
        if vecs.ndim != 2 or vecs.shape != (arr.size, self.dim):
            raise InvalidInputError(f"vectors must have shape ({arr.size}, {self.dim}), got {vecs.shape}")
        if not np.issubdtype(vecs.dtype, np.number) or not np.isfinite(vecs).all():
            raise InvalidInputError("vectors must be finite numbers")
        if np.unique(arr).size != arr.size:
            raise InvalidInputError("ids must be unique within one add() call")
        if arr.size == 0:
            return
        vecs = normalize(vecs)
        with self._lock.write():
            if self._overlay is not None:  # a snapshot is being serialised: the FAISS structures stay as they are
                self._overlay.add(arr, vecs)
            else:
                self._add_locked(arr, vecs)

    def _add_locked(self, arr: np.ndarray, vecs: np.ndarray) -> None:
        """Add normalised ``vecs`` under ``arr`` (replacing any there). Write lock held, not frozen."""
        existing = [int(i) for i in arr if int(i) in self._pos]
        if existing:
            self._remove_locked(np.asarray(existing, dtype=np.int64))
        start = len(self._labels)
        if not self._index.is_trained:
            self._train_ivf(vecs)
        self._index.add(vecs)
        self._labels = np.concatenate([self._labels, arr])
        self._dead = np.concatenate([self._dead, np.zeros(arr.size, dtype=bool)])
        self._pos.update(zip(arr.tolist(), range(start, start + arr.size), strict=True))
        self._sorted = None

    def remove(self, ids: Any) -> int:
        """Remove ``ids`` (unknown ids are ignored); returns how many were removed."""
        arr = as_ids(ids)
        with self._lock.write():
            if self._overlay is not None:
                return self._overlay.remove(arr, self._pos.__contains__)
            return self._remove_locked(arr)

    def _remove_locked(self, arr: np.ndarray) -> int:
        positions = np.asarray([self._pos.pop(int(i)) for i in np.unique(arr) if int(i) in self._pos])
        if positions.size == 0:
            return 0
        self._sorted = None
        if self.kind != "flat":
            self._dead[positions] = True
            return int(positions.size)
        faiss = faiss_module()
        self._index.remove_ids(faiss.IDSelectorBatch(positions.astype(np.int64)))  # compacts, keeps order
        self._labels = np.delete(self._labels, positions)
        self._dead = np.zeros(len(self._labels), dtype=bool)
        self._pos = {int(label): p for p, label in enumerate(self._labels.tolist())}
        return int(positions.size)

    def rebuild(self) -> VectorIndex:
        """A new index of the same kind and parameters holding only the live vectors (no tombstones)."""
        with self._lock.read():
            live = ~self._dead
            labels, vecs = self._labels[live].copy(), self._rows(np.flatnonzero(live)).copy()
            ov = self._overlay
            if ov is not None:
                keep = ~np.isin(labels, np.asarray(sorted(ov.hidden()), dtype=np.int64))
                extra = np.asarray(list(ov.vecs), dtype=np.int64)
                labels = np.concatenate([labels[keep], extra])
                vecs = np.concatenate([vecs[keep], np.stack(list(ov.vecs.values())).reshape(-1, self.dim)])
        fresh = VectorIndex(self.dim, self.kind, rebuild_ratio=self.rebuild_ratio, **self.params)
        fresh.add(labels, vecs)
        return fresh

    # ----------------------------------------------------------------- search
    def search(self, query: Any, k: int, allowed: Allowed = None) -> list[tuple[int, float]]:
        """The ``k`` best ids for ``query`` by inner product, best first, as ``(id, score)``.

        Args:
            query: ``(dim,)`` (or ``(1, dim)``); normalised here.
            k: how many results (fewer only when fewer ids exist or are permitted).
            allowed: ``None`` (everything), an int64 array of permitted ids, or a predicate
                ``f(ids: list[int]) -> set[int]`` returning which candidate ids are permitted
                (called with at most ``PREDICATE_BATCH`` ids at a time, each id at most once).

        Returns:
            Up to ``k`` ``(id, score)`` pairs, scores descending. With a filter, exactly
            ``min(k, number of permitted ids)`` results.

        Raises:
            InvalidInputError: ``k`` is not a positive int, ``query`` has the wrong shape or is not
                finite, or ``allowed`` is neither None, an int array nor a callable.
        """
        if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
            raise InvalidInputError(f"k must be a positive int, got {k!r}")
        q = np.asarray(query)
        if q.size != self.dim or q.ndim > 2 or not np.issubdtype(q.dtype, np.number):
            raise InvalidInputError(f"query must have shape ({self.dim},), got {q.shape}")
        if not np.isfinite(q).all():
            raise InvalidInputError("query must be finite")
        q = normalize(q.reshape(1, self.dim))
        k = int(k)
        if not callable(allowed) and allowed is not None:
            allowed = as_ids(allowed, "allowed")
        changed: Overlay | None = None
        with self._lock.read():
            if self._overlay is not None:  # a snapshot is being serialised: the frozen index less what changed,
                changed = Overlay()  # plus the changes
                changed.vecs, changed.removed = dict(self._overlay.vecs), set(self._overlay.removed)
        if changed is None:
            return self._search_index(q, k, allowed)
        hidden = changed.hidden()
        found = [p for p in self._search_index(q, k + len(hidden), allowed) if p[0] not in hidden]
        return merge(found[:k], changed.search(q, k, allowed), k)

    # ----------------------------------------------------------------- helpers
    def _new_ivf(self, nlist: int) -> Any:
        """An untrained IVF-Flat index (inner product) whose positions can be read back (direct map)."""
        faiss = faiss_module()
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(self.dim), self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.nprobe = min(self.params["nprobe"], nlist)
        return index

    def _train_ivf(self, vecs: np.ndarray) -> None:
        """Train the IVF cells on (a seeded sample of) the first vectors added. Lock held."""
        faiss = faiss_module()
        nlist = max(1, min(self.params["nlist"], vecs.shape[0] // IVF_MIN_PER_LIST))
        if nlist != self._index.nlist:
            self._index = self._new_ivf(nlist)
        n_train = min(vecs.shape[0], nlist * IVF_TRAIN_PER_LIST)
        sample = vecs
        if n_train < vecs.shape[0]:
            sample = vecs[np.sort(np.random.default_rng(0).choice(vecs.shape[0], n_train, replace=False))]
        self._index.train(sample)
        self._index.set_direct_map_type(faiss.DirectMap.Array)  # position -> stored vector (reconstruct)

    def _rows(self, positions: np.ndarray) -> np.ndarray:
        """The stored vectors at ``positions``, ``(n, dim)``. Lock held."""
        if self.kind == "ivf":
            if positions.size == 0:
                return np.zeros((0, self.dim), dtype=np.float32)
            return self._index.reconstruct_batch(np.ascontiguousarray(positions, dtype=np.int64))
        return self._xb()[positions]

    def _xb(self) -> np.ndarray:
        """A zero-copy ``(ntotal, dim)`` view of the stored vectors; valid until the next add. Lock held."""
        faiss = faiss_module()
        flat = self._index if self.kind == "flat" else faiss.downcast_index(self._index.storage)
        n = flat.ntotal
        if n == 0:
            return np.zeros((0, self.dim), dtype=np.float32)
        return faiss.rev_swig_ptr(flat.get_xb(), n * self.dim).reshape(n, self.dim)

    def _pairs(self, scores: np.ndarray, pos: np.ndarray) -> list[tuple[int, float]]:
        ok = pos >= 0
        return [(int(label), float(s)) for label, s in zip(self._labels[pos[ok]], scores[ok], strict=True)]

def load(directory: str | os.PathLike[str]) -> tuple[VectorIndex, str]:
    """Read an index written by :meth:`VectorIndex.save`; returns ``(index, fingerprint)``."""
    return VectorIndex.load(directory)


def build_index(
    ids: Any,
    vectors: Any,
    exact_threshold: int = 20_000,
    *,
    approx: str = "ivf",
    m: int = HNSW_M,
    ef_construction: int = HNSW_EF_CONSTRUCTION,
    ef_search: int = HNSW_EF_SEARCH,
    nlist: int | None = None,
    nprobe: int = IVF_NPROBE,
) -> VectorIndex:
    """Build an index over ``vectors`` (n, dim): exact below ``exact_threshold`` vectors, ``approx`` at or above.

    Args:
        approx: the approximate kind, ``"ivf"`` (default: builds in seconds) or ``"hnsw"``.
        nlist: IVF cells (default :func:`default_nlist` of the size).

    Raises:
        InvalidInputError: ``vectors`` is not 2-D or does not match ``ids``, or ``approx`` is unknown.
    """
    vecs = np.asarray(vectors)
    if vecs.ndim != 2:
        raise InvalidInputError(f"vectors must be 2-D (n, dim), got shape {vecs.shape}")
    if approx not in ("ivf", "hnsw"):
        raise InvalidInputError(f"approx must be 'ivf' or 'hnsw', got {approx!r}")
    kind = "flat" if vecs.shape[0] < exact_threshold else approx
    index = VectorIndex(
        int(vecs.shape[1]), kind, m=m, ef_construction=ef_construction, ef_search=ef_search,
        nlist=default_nlist(vecs.shape[0]) if nlist is None else nlist, nprobe=nprobe,
    )  # fmt: skip
    index.add(ids, vecs)
    return index
