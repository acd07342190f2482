"""The search's vector index kept in step with the DB: built or loaded, persisted, synced with other processes.

The index (``hub.search.index``) is derived from the vectors stored on adapter rows, persisted under
``settings.index_dir`` with a :func:`fingerprint` of the vectors it holds (saves run outside the service lock,
:meth:`IndexKeeper._save`), and rebuilt at start when the DB's fingerprint differs (or by ``loom reindex``, which
also re-embeds). Rows embedded by an older text recipe of the same model are indexed as they are and re-embedded
in the background (:mod:`hub.services.search_reembed`). Other processes publish too (job workers, ``loom demo``'s
background build, another process's re-embedding pass): a search first compares a cheap watermark of the
adapters table with the one it last saw (at most every ``REFRESH_INTERVAL_S``) and, when it moved, brings the
index in step with the rows whose vector changed. Part of :class:`hub.services.search.SearchService`.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterable, Sequence
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy.orm import Session, sessionmaker

from hub.repositories import adapters as repo
from hub.services.search_filters import AllowedCache
from hub.services.search_reembed import Reembedder
from hub.services.search_text import RECIPE, embedding_key, is_old_recipe, vector_hash
from hub.settings import Settings

if TYPE_CHECKING:  # pragma: no cover
    from hub.search.embedder import Embedder

AUTOSAVE_DELAY_S = 5.0
#: how often a search checks whether other processes changed the adapters (seconds)
REFRESH_INTERVAL_S = 1.0
#: a search's refresh waits at most this long for the service lock, else the next search refreshes (seconds)
REFRESH_WAIT_S = 0.05
#: rows stamped up to this long before the last watermark are read again (other hosts' clocks, late commits)
CLOCK_MARGIN_S = 5.0


def fingerprint(model: str, hashes: Iterable[tuple[int, str | None]]) -> str:
    """What a persisted index holds: the model and each indexed adapter's ``(id, vector hash)``, by id.

    Computed from the DB's rows when an index is loaded and from the index's own map when it is saved, so a
    saved file matches the DB only if it holds exactly the DB's vectors.
    """
    h = hashlib.sha256(model.encode())
    h.update("".join(f"{i}:{eh};" for i, eh in sorted(hashes)).encode())
    return h.hexdigest()



class IndexKeeper:
    """The index part of :class:`hub.services.search.SearchService`: the loaded index, the id -> vector hash map it
    holds, their persistence and their sync with the DB. The service provides ``settings``, ``sessions``,
    ``allowed_cache``, ``reembedder`` and ``embedder`` and calls :meth:`_init_index` from its constructor."""

    settings: Settings
    sessions: sessionmaker[Session]
    allowed_cache: AllowedCache
    reembedder: Reembedder
    if TYPE_CHECKING:  # pragma: no cover
        @property
        def embedder(self) -> Embedder: ...

    def _init_index(self) -> None:
        self._index: Any = None
        self._lock = threading.RLock()  # the index reference, its id -> hash map and every change to them
        self._save_lock = threading.Lock()  # one save at a time
        self._touched: set[int] | None = None  # ids changed while a save rebuilds the index
        self._dirty = False
        self._timer: threading.Timer | None = None
        self._mark: tuple[Any, ...] | None = None  # the adapters table's watermark the index reflects
        self._hashes: dict[int, str | None] = {}  # adapter id -> embedding hash the index holds
        self._checked = 0.0

    @property
    def embedding_key(self) -> str:
        """The ``embedding_model`` recorded beside vectors this service makes (:func:`embedding_key`)."""
        return embedding_key(self.settings.embedding_model)

    def _indexable(self, stored: str | None) -> bool:
        """Whether a row's vector belongs in the index: the configured model's, by this text recipe or an older
        one (an older one is re-embedded in the background, :mod:`hub.services.search_reembed`)."""
        return stored == self.embedding_key or is_old_recipe(stored, self.settings.embedding_model)

    def _db_hashes(self, s: Session) -> dict[int, str | None]:
        """Adapter id -> embedding hash of every row whose vector belongs in the index, by id."""
        model = self.settings.embedding_model
        return {i: h for i, h, m in repo.embedding_hashes_of_models(s, model, model + RECIPE) if self._indexable(m)}

    def _fingerprint(self, s: Session) -> str:
        """The fingerprint of the index the DB's vectors make (:func:`fingerprint`)."""
        return fingerprint(self.settings.embedding_model, self._db_hashes(s).items())

    def _build_from_db(self, s: Session) -> tuple[Any, dict[int, str | None]]:
        """A new index of the stored vectors that belong in it, and their hashes."""
        from hub.search.index import build_index

        ids: list[int] = []
        vecs: list[np.ndarray] = []
        hashes: dict[int, str | None] = {}
        model = self.settings.embedding_model
        for i, blob, m, h in repo.embeddings_for_index(s, model, model + RECIPE):
            if blob is not None and self._indexable(m):
                ids.append(i)
                vecs.append(np.frombuffer(blob, dtype=np.float32))
                hashes[i] = h
        dim = vecs[0].shape[0] if vecs else self.embedder.dim
        arr = np.stack(vecs).astype(np.float32) if vecs else np.zeros((0, dim), np.float32)
        index = build_index(np.asarray(ids, dtype=np.int64), arr, self.settings.exact_search_threshold,
                            approx=self.settings.search_index)
        return index, hashes

    def ensure_index(self) -> str:
        """Load the persisted index if it matches the DB, else build it from the stored vectors.

        Vectors the configured model made from an older embedding text are indexed as they are and re-embedded
        in the background (:attr:`reembedder`), each batch replacing its vectors in the live index; searches
        answer meanwhile. Returns "loaded", "rebuilt" or "ready" (already in memory).
        """
        if self._index is not None:
            return "ready"
        with self._lock:
            if self._index is not None:
                return "ready"
            status = "loaded"
            with self.sessions() as s:
                mark, hashes = repo.watermark(s), self._db_hashes(s)
                index = self._load_if(fingerprint(self.settings.embedding_model, hashes.items()))
                if index is None:
                    status = "rebuilt"
                    index, hashes = self._build_from_db(s)
            self._mark, self._hashes, self._index = mark, hashes, index
            self.reembedder.start()
        if status == "rebuilt":
            self._save()
        return status

    def _load_if(self, fp: str) -> Any:
        """The persisted index if its fingerprint is ``fp``, else None."""
        if not self.settings.index_dir.exists():
            return None
        try:
            from hub.search.index import VectorIndex

            index, saved = VectorIndex.load(self.settings.index_dir)
        except Exception:  # noqa: BLE001 - any unreadable index is rebuilt
            return None
        return index if saved == fp else None

    def _save(self) -> None:
        """Persist the index with the fingerprint of what it holds; neither searches nor changes wait for it.

        Under the service lock only a copy of the id -> hash map (what the fingerprint covers) and the index's
        freeze (``VectorIndex.begin_snapshot``), so both describe one state. The copy of the frozen index
        (seconds at 1M: changes meanwhile go to its overlay and searches merge them in), the fingerprint and the
        file are made under no lock but ``_save_lock`` (one save at a time). An index with many tombstones is
        rebuilt first, also outside the lock: ids changed meanwhile are recorded (``_touched``) and replayed into
        the new index before it replaces the old one.
        """
        with self._save_lock:
            with self._lock:
                index = self._index
                if index is None:
                    return
                self._dirty = False
                rebuild = bool(getattr(index, "needs_rebuild", False))
                if rebuild:
                    self._touched = set()
            try:
                if rebuild:
                    self._swap_rebuilt(index, index.rebuild())  # drop tombstones before persisting
                with self._lock:  # the ids and hashes the index holds now, and the index frozen as it is now
                    held = list(self._hashes.items())
                    take = self._index.begin_snapshot()
                snapshot = take()  # the copy; changes meanwhile go to the index's overlay (hub.search.overlay)
                fp = fingerprint(self.settings.embedding_model, held)
                self.settings.index_dir.mkdir(parents=True, exist_ok=True)
                snapshot.save(self.settings.index_dir, fp)
            except BaseException:
                with self._lock:
                    self._dirty, self._touched = True, None
                raise

    def _swap_rebuilt(self, old: Any, fresh: Any) -> None:
        """Replace ``old`` by ``fresh`` (its rebuild), replaying the ids changed in ``old`` since the rebuild began."""
        with self._lock:
            touched, self._touched = self._touched or set(), None
            if self._index is not old:  # replaced meanwhile (rebuild()): keep that one
                return
            kept = np.asarray(sorted(i for i in touched if i in old), dtype=np.int64)
            gone = np.asarray(sorted(i for i in touched if i not in old), dtype=np.int64)
            if gone.size:
                fresh.remove(gone)
            if kept.size:
                fresh.add(kept, old.vectors(kept))
            self._index = fresh

    def _changed(self, ids: Sequence[int]) -> None:
        """Note that index entries ``ids`` changed (lock held): the index is dirty; a rebuild in progress replays them."""
        if self._touched is not None:
            self._touched.update(int(i) for i in ids)
        self._dirty = True

    def save(self) -> None:
        """Persist the in-memory index if it changed (called on shutdown and by the autosave timer)."""
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None
            dirty = self._dirty
        if dirty:
            self._save()

    def _schedule_save(self) -> None:
        """Persist a few seconds after the last change (debounced), so other processes see a fresh index."""
        if self._timer is None:
            self._timer = threading.Timer(AUTOSAVE_DELAY_S, self._autosave)
            self._timer.daemon = True
            self._timer.start()

    def _autosave(self) -> None:
        with self._lock:
            self._timer = None
        try:
            self.save()
        except Exception:  # noqa: BLE001 - the next change or shutdown tries again
            pass

    def is_stale(self) -> bool:
        """Whether the persisted index differs from the DB's vectors."""
        try:
            from hub.search.index import VectorIndex

            _, saved = VectorIndex.load(self.settings.index_dir)
        except Exception:  # noqa: BLE001
            return True
        with self.sessions() as s:
            return saved != self._fingerprint(s)

    def refresh(self, *, force: bool = False) -> int:
        """Bring the loaded index in step with adapters other processes published, changed or deleted.

        At most every ``REFRESH_INTERVAL_S``: cheap when nothing changed (the watermark: three index lookups),
        and when it moved only the rows changed or re-embedded since the last one are read (``updated_at`` and
        ``embedded_at`` indexes: vectors another process's background re-embedding stored are followed too). A row
        deleted elsewhere does not move the watermark: a search that meets its id drops it from the index
        and searches again (:meth:`search`), and ``force`` (``loom fsck``, tests) compares every row now.
        Without ``force`` it waits at most ``REFRESH_WAIT_S`` for the service lock (held by a change, or briefly
        by a save) and otherwise leaves it to the next search. Returns how many index
        entries changed.
        """
        import time

        if self._index is None or (not force and time.monotonic() - self._checked < REFRESH_INTERVAL_S):
            return 0
        if not self._lock.acquire(timeout=-1 if force else REFRESH_WAIT_S):
            return 0
        try:
            if self._index is None:
                return 0
            self._checked = time.monotonic()
            with self.sessions() as s:
                mark = repo.watermark(s)
                if force or self._mark is None or self._mark[1] is None:
                    now = self._db_hashes(s)
                    gone = [i for i in self._hashes if i not in now]
                elif mark == self._mark:
                    return 0
                else:  # rows stamped since the last watermark (less a margin for other hosts' clocks)
                    margin = timedelta(seconds=CLOCK_MARGIN_S)
                    embedded = self._mark[2] - margin if self._mark[2] is not None else None
                    rows = repo.embedding_hashes_since(s, self._mark[1] - margin, int(self._mark[0] or 0), embedded)
                    now = dict(self._hashes) | {i: h for i, h, m in rows if self._indexable(m)}
                    gone = [i for i, _, m in rows if not self._indexable(m) and i in self._hashes]
                    for i in gone:
                        now.pop(i, None)
                changed = [i for i, h in now.items() if self._hashes.get(i, "") != h]
                vectors = repo.embeddings_of(s, changed) if changed else {}
            if gone:
                self._index.remove(np.asarray(gone, dtype=np.int64))
            for i, blob in vectors.items():
                self._index.add(np.asarray([i], dtype=np.int64), np.frombuffer(blob, dtype=np.float32)[None, :])
            self._mark, self._hashes = mark, now
            if gone or vectors or force:
                self.allowed_cache.invalidate()  # rows changed elsewhere: filter and visibility sets may have too
            if gone or vectors:
                self._changed([*gone, *vectors])
                self._schedule_save()
            return len(gone) + len(vectors)
        finally:
            self._lock.release()

    def _forget(self, ids: list[int]) -> None:
        """Drop adapters a search found deleted (by another process) from the index."""
        with self._lock:
            if self._index is not None and ids:
                self._index.remove(np.asarray(ids, dtype=np.int64))
                for i in ids:
                    self._hashes.pop(i, None)
                self._changed(ids)
                self._schedule_save()

    def upsert(self, adapter_id: int, vector: bytes) -> None:
        """Put an adapter's new vector into the loaded index (no-op until the index is loaded)."""
        with self._lock:
            if self._index is None:
                return
            self.allowed_cache.invalidate()
            ids = np.asarray([adapter_id], dtype=np.int64)
            self._index.add(ids, np.frombuffer(vector, dtype=np.float32)[None, :])  # replaces an old vector
            self._hashes[adapter_id] = vector_hash(vector)
            self._changed([adapter_id])
            self._schedule_save()

    def _take_reembedded(self, done: list[tuple[int, str | None, bytes]]) -> None:
        """Put re-embedded vectors ``(id, hash of the vector replaced, new vector)`` into the loaded index, each
        where the index still holds the replaced vector (a patch may have put a newer one in meanwhile). The
        background pass persists the index itself (``search_reembed.SAVE_EVERY_S``)."""
        with self._lock:
            if self._index is None:
                return
            take = [(i, blob) for i, old, blob in done if self._hashes.get(i, old) == old]
            if not take:
                return
            ids = np.asarray([i for i, _ in take], dtype=np.int64)
            self._index.add(ids, np.stack([np.frombuffer(b, dtype=np.float32) for _, b in take]))
            self._hashes.update((i, vector_hash(b)) for i, b in take)
            self._changed([i for i, _ in take])

    def remove(self, adapter_id: int) -> None:
        self.allowed_cache.invalidate()
        with self._lock:
            if self._index is not None:
                self._index.remove(np.asarray([adapter_id], dtype=np.int64))
                self._hashes.pop(adapter_id, None)
                self._changed([adapter_id])
                self._schedule_save()

    def indexed_count(self) -> int:
        self.ensure_index()
        return len(self._index)

    def rebuild(self) -> int:
        """Rebuild the index from the vectors in the DB (no re-embedding); returns its size."""
        with self._lock:
            with self.sessions() as s:
                self._index, self._hashes = self._build_from_db(s)
        self._save()
        return len(self._index)
