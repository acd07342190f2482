"""Re-embedding adapters from their current text, in batches; for old-recipe vectors in a background thread.

When :data:`hub.services.search_text.EMBEDDING_TEXT_VERSION` changes, the vectors a hub stored are still the same
model's (only the embedded text differs), so the search index is built from them at once and
:class:`Reembedder` redoes them behind it: a daemon thread embeds a batch, stores it, puts it into the live
index, and goes on until none is left (hours at 1M adapters on CPU), logging its progress and persisting the
index now and then; :meth:`Reembedder.stop` (the hub's shutdown) ends it after the batch in hand.

One pass per hub, not per process: the pass runs under a lease in the database (:class:`hub.services.leases.DbLease`,
``search-reembed``), renewed while it runs and given up when it ends. Every other process (API workers, job
workers) waits, trying the lease every ``LEASE_POLL_S``, and takes over when the holder stopped or crashed
(its lease expires after ``LEASE_TTL_S``); meanwhile it follows the holder's vectors through its search's
incremental sync: a stored vector stamps ``embedded_at`` (not ``updated_at``, which says when the adapter
itself changed), which the search's watermark covers.

A row is stored only if its vector is still the one that was read (``embedding_hash``), so a patch or publish
that re-embedded it meanwhile wins; the live index takes a batch only where it still holds the vector that
was replaced (``take``: :meth:`hub.services.search.SearchService._take_reembedded`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence

import numpy as np
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.db.models import Adapter
from hub.repositories import adapters as repo
from hub.services.leases import DbLease
from hub.services.search_text import RECIPE, embedding_key, embedding_text, is_old_recipe, stored_vector

log = logging.getLogger(__name__)

#: adapters embedded per batch in the background
BATCH = 64
#: the background run logs its progress at most this often (seconds)
PROGRESS_EVERY_S = 10.0
#: and persists the index at most this often while it runs (seconds); once more at the end
SAVE_EVERY_S = 300.0
#: the lease on the pass: held this long unless renewed (seconds; renewed every quarter of it while the pass runs)
LEASE_NAME = "search-reembed"
LEASE_TTL_S = 120.0
#: a process without the lease tries it again this often (seconds), to take over from a holder that died
LEASE_POLL_S = 30.0


class Reembedder:
    """Re-embeds adapters for a search service; runs the old-recipe pass in a background thread.

    Args:
        sessions: the DB. model: the configured embedding model. embed: texts -> ``(n, dim)`` vectors.
        take: called with ``(id, hash of the vector replaced, new vector bytes)`` of each stored batch when
            ``live``. save: persists the index.
        lease: the hub-wide lease on the background pass (default: ``LEASE_NAME`` for ``LEASE_TTL_S``).
    """

    def __init__(self, sessions: sessionmaker[Session], model: str, embed: Callable[[Sequence[str]], np.ndarray],
                 take: Callable[[list[tuple[int, str | None, bytes]]], None], save: Callable[[], None],
                 lease: DbLease | None = None) -> None:
        self.sessions, self.model, self.key = sessions, model, embedding_key(model)
        self._embed, self._take, self._save = embed, take, save
        self.batch = BATCH
        self.lease = lease or DbLease(sessions, LEASE_NAME, LEASE_TTL_S)
        self.poll_s = LEASE_POLL_S
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self.done = 0  # adapters re-embedded by the background run so far

    @property
    def running(self) -> bool:
        """Whether the background thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Start the background pass over old-recipe vectors (no-op while one runs or after :meth:`stop`)."""
        with self._lock:
            if self.running or self._stop.is_set():
                return
            self._thread = threading.Thread(target=self._run, daemon=True, name="loom-search-reembed")
            self._thread.start()

    def stop(self, timeout: float = 30.0) -> bool:
        """Ask the background pass to end after its current batch and wait up to ``timeout`` s; True if it ended."""
        self._stop.set()
        return self.wait(timeout)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` s for the background pass to finish; True if none runs any more."""
        t = self._thread
        if t is not None:
            t.join(timeout)
        return not self.running

    def _run(self) -> None:
        """Until nothing old is left or :meth:`stop`: run the pass while holding the lease, else wait for it."""
        waiting = False
        try:
            while not self._stop.is_set():
                if self.lease.acquire():
                    try:
                        if self._pass():
                            return
                    finally:
                        self._release()
                elif not waiting:
                    waiting = True
                    holder = self.lease.current()
                    log.info("search: another process (%s) holds the re-embedding lease; this one follows the "
                             "vectors it stores and takes over if it stops", holder[0] if holder else "?")
                self._stop.wait(self.poll_s)
        except Exception:  # noqa: BLE001 - searches go on with the stored vectors; the next start tries again
            log.exception("search: background re-embedding failed")

    def _release(self) -> None:
        try:
            self.lease.release()
        except Exception:  # noqa: BLE001 - it expires by itself
            log.warning("search: could not release the re-embedding lease; it expires in %.0f s", self.lease.ttl_s)

    def _pass(self) -> bool:
        """The pass over old-recipe vectors, lease held; True when none is left (else stopped or the lease lost)."""
        ids = self.old_recipe_ids()
        if not ids:
            return True
        log.info("search: re-embedding %d adapter(s) made with an older embedding text in the background; "
                 "searches use their stored vectors meanwhile", len(ids))
        t0 = last_log = last_save = last_renew = time.monotonic()
        lost = False

        def progress(done: int, total: int) -> None:
            nonlocal last_log, last_save, last_renew, lost
            now = time.monotonic()
            if now - last_log >= PROGRESS_EVERY_S:
                log.info("search: re-embedded %d/%d adapter(s) (%.0f s)", done, total, now - t0)
                last_log = now
            if now - last_save >= SAVE_EVERY_S:
                self._save()
                last_save = time.monotonic()
            if now - last_renew >= self.lease.ttl_s / 4:
                lost = not self.lease.renew()
                last_renew = now
                if lost:
                    log.warning("search: the re-embedding lease expired and was taken by another process; "
                                "this one stops re-embedding")

        n = self.reembed(ids, progress, self.batch, stop=lambda: self._stop.is_set() or lost, only_old=True,
                         live=True)
        self.done += n
        halted = self._stop.is_set() or lost
        log.info("search: re-embedded %d adapter(s) in %.0f s%s", n, time.monotonic() - t0,
                 " (stopped: the rest continues at the next start)" if self._stop.is_set() else "")
        self._save()
        return not halted

    def old_recipe_ids(self) -> list[int]:
        """Ids of the adapters whose vector comes from an older text recipe of the configured model."""
        model = self.model
        with self.sessions() as s:
            rows = repo.embedding_hashes_of_models(s, model, model + RECIPE)
        return [i for i, _, m in rows if is_old_recipe(m, model)]

    def reembed(self, ids: list[int], progress: Callable[[int, int], None] | None, batch: int, *,
                stop: Callable[[], bool] | None = None, only_old: bool = False, live: bool = False) -> int:
        """Embed the current text of adapters ``ids`` in batches and store the vectors; returns how many were stored.

        Args:
            progress: called with (done, total) after each batch.
            stop: asked before each batch; True, the rest is left.
            only_old: skip rows whose vector is no longer an old recipe's (redone meanwhile).
            live: put each stored batch into the service's loaded index.
        """
        key, model = self.key, self.model
        total, stored = len(ids), 0
        for start in range(0, total, batch):
            if stop is not None and stop():
                break
            with self.sessions() as s:
                chunk = list(s.execute(select(Adapter.id, Adapter.namespace, Adapter.name, Adapter.description,
                                              Adapter.tags, Adapter.embedding_hash, Adapter.embedding_model)
                                       .where(Adapter.id.in_(ids[start : start + batch])).order_by(Adapter.id)))
            if only_old:
                chunk = [r for r in chunk if is_old_recipe(r[6], model)]
            if chunk:
                vecs = self._embed([embedding_text(r[1], r[2], r[3], r[4] or []) for r in chunk])
                done: list[tuple[int, str | None, bytes]] = []
                with self.sessions.begin() as s:
                    for r, v in zip(chunk, vecs, strict=True):
                        blob = np.asarray(v, dtype=np.float32).tobytes()
                        res = s.execute(
                            update(Adapter)
                            .where(Adapter.id == r[0], Adapter.embedding_hash.is_not_distinct_from(r[5]))
                            .values(**stored_vector(blob, key), updated_at=Adapter.updated_at)
                        )
                        if res.rowcount:  # type: ignore[attr-defined]
                            done.append((int(r[0]), r[5], blob))
                stored += len(done)
                if live and done:
                    self._take(done)
            if progress:
                progress(min(start + batch, total), total)
        return stored
