"""The search's filtered allowed sets, cached for a moment, and the check that keeps the cache honest.

A filtered search needs every visible adapter matching the filters (the engine searches inside that set, so
filters never cut the result short). Reading that set costs a query returning one row per match (25,000 ids
for a base model with a quarter of 100,000 adapters: most of a search's time), so :class:`AllowedCache`
keeps each ``(viewer, filters)`` set, reads it again in the background once it is older than ``ttl_s``
seconds (serving the old one meanwhile), and drops them all on every change this process makes (publish,
patch, delete). A change made by another process shows up within about ``ttl_s``; until then no hit can
break visibility or the filters, because :func:`row_matches` checks every returned row, and a row that
fails makes the search drop the cache and ask the database again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import Adapter, User
    from hub.repositories.adapters import AdapterFilters

log = logging.getLogger(__name__)

Key = tuple[int | None, "AdapterFilters"]


class AllowedCache:
    """``(viewer, filters)`` -> sorted unique int64 ids, kept ``ttl_s`` seconds (at most ``size`` sets)."""

    def __init__(self, ttl_s: float = 2.0, size: int = 64) -> None:
        self.ttl_s, self.size = float(ttl_s), int(size)
        self._sets: OrderedDict[Key, tuple[float, np.ndarray]] = OrderedDict()
        self._lock = threading.Lock()
        self._generation = 0
        self._refreshing: set[Key] = set()
        self.hits = 0

    def get(self, viewer: User | None, f: AdapterFilters, load: Callable[[], list[int]]) -> np.ndarray:
        """The allowed ids for ``viewer`` and ``f``.

        A cached set is returned at once; one older than ``ttl_s`` is still returned while a background
        thread reads it again (``load`` must open its own session). Without a cached set (first use, or
        after :meth:`invalidate`) the caller waits for ``load()``.
        """
        key: Key = (viewer.id if viewer is not None else None, f)
        with self._lock:
            entry = self._sets.get(key)
            if entry is not None:
                self._sets.move_to_end(key)
                self.hits += 1
                if entry[0] <= time.monotonic() and key not in self._refreshing:
                    self._refreshing.add(key)
                    threading.Thread(target=self._refresh, args=(key, load, self._generation), daemon=True,
                                     name="search-allowed-refresh").start()
                return entry[1]
            generation = self._generation
        ids = _as_sorted(load())
        self._store(key, ids, generation)
        return ids

    def _refresh(self, key: Key, load: Callable[[], list[int]], generation: int) -> None:
        try:
            self._store(key, _as_sorted(load()), generation)
        except Exception:  # noqa: BLE001 - the old set stays until the next try; every hit is re-checked
            log.warning("search: could not refresh an allowed set", exc_info=True)
        finally:
            with self._lock:
                self._refreshing.discard(key)

    def _store(self, key: Key, ids: np.ndarray, generation: int) -> None:
        if self.ttl_s <= 0:
            return
        with self._lock:
            if generation != self._generation:  # something changed while loading: do not keep it
                return
            self._sets[key] = (time.monotonic() + self.ttl_s, ids)
            self._sets.move_to_end(key)
            while len(self._sets) > self.size:
                self._sets.popitem(last=False)

    def invalidate(self) -> None:
        """Forget every cached set (an adapter was published, changed or deleted)."""
        with self._lock:
            self._generation += 1
            self._sets.clear()


def _as_sorted(ids: list[int]) -> np.ndarray:
    out = np.unique(np.asarray(ids, dtype=np.int64))  # sorted, unique
    out.setflags(write=False)
    return out


def row_matches(a: Adapter, viewer: User | None, f: AdapterFilters) -> bool:
    """Whether ``viewer`` may see ``a`` and ``a`` matches ``f`` now (the row as just read from the DB)."""
    if a.visibility != "public" and (viewer is None or a.owner_id != viewer.id):
        return False
    rank = a.latest_rank
    return not (
        (f.base_model and a.base_model != f.base_model)
        or (f.license and a.license != f.license)
        or (f.owner and a.owner.name != f.owner)
        or (f.min_rank is not None and (rank is None or rank < f.min_rank))
        or (f.max_rank is not None and (rank is None or rank > f.max_rank))
        or (f.kind and a.kind != f.kind)
        or (f.namespace and a.namespace != f.namespace)
        or (f.tag is not None and f.tag not in (a.tags or []))
    )
