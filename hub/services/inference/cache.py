"""The adapter cache of the inference service: a host-memory tier and a per-base device tier.

* :class:`CpuTier` keeps parsed :class:`~hub.core.adapter.LoraAdapter` objects (keyed ``ns/name@version``)
  in host memory, least recently used first out; a miss loads the version from the registry's blob
  store and records the cold load time.
* :class:`GpuTier` decides which adapters occupy the slot bank of one served base model
  (:class:`routing.batching.MixedAdapterModel`); it is driven only from that base's batcher thread,
  so slots never change under a running forward.

Pinned adapters are never evicted from either tier. Limits come from the settings
``adapter_cache_cpu`` / ``adapter_cache_gpu``; a batch that needs more distinct adapters than the
device limit loads them all anyway (the limit is then exceeded until the next batch evicts).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError


def _check_limit(name: str, n: int) -> int:
    if not isinstance(n, int) or n < 1:
        raise InvalidInputError(f"{name} must be an integer >= 1, got {n!r}")
    return n


class CpuTier:
    """LRU cache of parsed adapters in host memory.

    Args:
        limit: the most unpinned adapters kept.
    """

    def __init__(self, limit: int) -> None:
        self.limit = _check_limit("adapter_cache_cpu", limit)
        self._items: OrderedDict[str, LoraAdapter] = OrderedDict()
        self._tags: dict[str, str | None] = {}
        self._pinned: set[str] = set()
        self._lock = threading.Lock()
        self._key_locks: dict[str, threading.Lock] = {}
        self.load_seconds: dict[str, float] = {}
        self.hits = 0
        self.misses = 0

    def get(self, key: str, load: Callable[[], LoraAdapter], tag: str | None = None) -> LoraAdapter:
        """The adapter ``key``, loading it with ``load()`` on a miss (timed into ``load_seconds``).

        ``tag`` (the version's content hash) guards against a name deleted and published again: a
        cached entry with another tag is reloaded.
        """
        with self._lock:
            if key in self._items and self._tags.get(key) != tag:
                del self._items[key]
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            klock = self._key_locks.setdefault(key, threading.Lock())
        with klock:  # one loader per key; others wait for it
            with self._lock:
                if key in self._items:
                    self.hits += 1
                    return self._items[key]
            t0 = time.perf_counter()
            adapter = load()
            dt = time.perf_counter() - t0
            with self._lock:
                self.misses += 1
                self.load_seconds[key] = dt
                self._items[key], self._tags[key] = adapter, tag
                self._evict()
                self._key_locks.pop(key, None)
            return adapter

    def _evict(self) -> None:
        unpinned = [k for k in self._items if k not in self._pinned]
        while len(unpinned) > self.limit:
            k = unpinned.pop(0)
            del self._items[k]
            self._tags.pop(k, None)

    def pin(self, key: str) -> None:
        """Never evict ``key`` (it need not be loaded yet)."""
        with self._lock:
            self._pinned.add(key)

    def unpin(self, key: str) -> None:
        with self._lock:
            self._pinned.discard(key)
            self._evict()

    def keys(self) -> list[str]:
        """Cached keys, least recently used first."""
        with self._lock:
            return list(self._items)

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._tags.pop(key, None)


class GpuTier:
    """Which adapters occupy the slot bank of one served model (LRU, pinning, a limit).

    Args:
        mixed: the :class:`routing.batching.MixedAdapterModel`.
        limit: the most unpinned adapters kept loaded between batches.
    """

    def __init__(self, mixed: Any, limit: int) -> None:
        self.mixed = mixed
        self.limit = _check_limit("adapter_cache_gpu", limit)
        self._lru: OrderedDict[str, LoraAdapter] = OrderedDict()  # key -> the loaded adapter
        self._pinned: set[str] = set()
        self.loads = 0
        self.evictions = 0
        self.load_seconds: dict[str, float] = {}

    def ensure(self, adapters: dict[str, LoraAdapter]) -> None:
        """Load every adapter of ``adapters`` (key -> adapter) that is not resident; evict LRU others.

        Raises:
            IncompatibleAdaptersError: an adapter that does not fit the model (nothing is left half-loaded).
        """
        need = set(adapters)
        for key in need & set(self._lru):
            self._lru.move_to_end(key)
        for key, ad in adapters.items():
            if self._lru.get(key) is ad:
                continue  # resident (a different object under the same key is reloaded)
            t0 = time.perf_counter()
            self.mixed.load_adapter(key, ad)
            self.load_seconds[key] = time.perf_counter() - t0
            self.loads += 1
            self._lru[key] = ad
        self._evict(keep=need)

    def _evict(self, keep: Iterable[str] = ()) -> None:
        keep = set(keep) | self._pinned
        extra = len([k for k in self._lru if k not in self._pinned]) - self.limit
        for key in [k for k in self._lru if k not in keep]:
            if extra <= 0:
                break
            self.mixed.unload_adapter(key)
            del self._lru[key]
            self.evictions += 1
            extra -= 1

    def pin(self, key: str) -> None:
        self._pinned.add(key)

    def unpin(self, key: str) -> None:
        self._pinned.discard(key)

    def resident(self) -> list[str]:
        """Loaded keys, least recently used first."""
        return list(self._lru)
