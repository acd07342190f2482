"""A node's bounded read-through cache of blobs from a remote store, as local files.

Safetensors and PEFT loading need a file path, so a remote store downloads a blob once into
``<folder>/ab/cdef...`` and hands out that path. Downloads are checked against the key (the sha256 of
the content) before they are renamed into place, so a cache file is always whole and right. The
cache is shared by every process of the node through the filesystem: a hit touches the file's mtime,
and after each insert the least recently used files are deleted until the total is at most
``max_bytes`` (the file just inserted always stays, even if it alone is larger). A path handed out
and opened right away stays readable after eviction (POSIX keeps an open file's data).
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from hub.core.errors import StorageError
from hub.storage import staging
from hub.storage.base import key_of, key_path


class BlobCache:
    """Content-addressed local files under ``folder``, at most ``max_bytes`` in all (LRU by mtime).

    Args:
        folder: the cache's folder (created if needed); its ``tmp/`` holds downloads in progress.
        max_bytes: the bound on the total size of cached blobs.
    """

    def __init__(self, folder: str | os.PathLike[str], max_bytes: int) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, got {max_bytes}")
        self.folder = Path(folder)
        self.max_bytes = max_bytes
        self.temp_dir = self.folder / "tmp"
        self.temp_dir.mkdir(parents=True, exist_ok=True)
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._clock = 0
        self.hits = 0
        self.misses = 0

    def file(self, key: str) -> Path:
        """Where ``key`` lies when cached (it may not be)."""
        return self.folder / key_path(key)

    def get(self, key: str) -> Path | None:
        """The cached file of ``key`` (marked as just used), or None."""
        f = self.file(key)
        try:
            self._touch(f)
        except FileNotFoundError:
            return None
        return f

    def fetch(self, key: str, download: Callable[[], Iterator[bytes]]) -> Path:
        """The cached file of ``key``, downloading it with ``download()`` on a miss (once per key at a time).

        Raises:
            StorageError: the downloaded bytes do not hash to ``key``.
            whatever ``download`` raises (NotFoundError, StorageUnavailableError); nothing is cached then.
        """
        if (f := self.get(key)) is not None:
            self.hits += 1
            return f
        with self._lock_for(key):
            if (f := self.get(key)) is not None:  # another thread fetched it meanwhile
                self.hits += 1
                return f
            self.misses += 1
            out, tmp = staging.new_temp_file(self.temp_dir)
            try:
                h = hashlib.sha256()
                with out:
                    for chunk in download():
                        h.update(chunk)
                        out.write(chunk)
                if h.hexdigest() != key:
                    raise StorageError(f"blob {key} came back with other content (sha256 {h.hexdigest()})")
                return self.insert(tmp, key)
            finally:
                tmp.unlink(missing_ok=True)

    def insert(self, tmp: Path, key: str) -> Path:
        """Move a local file whose sha256 is ``key`` into the cache, then evict down to the bound."""
        dest = self.file(key)
        dest.parent.mkdir(exist_ok=True)
        os.replace(tmp, dest)
        self._touch(dest)
        self.evict(keep=key)
        return dest

    def discard(self, key: str) -> None:
        """Forget ``key`` (after it was deleted from the store)."""
        self.file(key).unlink(missing_ok=True)

    def entries(self) -> list[tuple[int, int, str, Path]]:
        """(mtime, size, key, file) of every cached blob, least recently used first."""
        out = []
        for sub in self.folder.iterdir():
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for f in sub.iterdir():
                key = key_of(f"{sub.name}/{f.name}")
                if key is None:
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:
                    continue
                out.append((st.st_mtime_ns, st.st_size, key, f))
        return sorted(out)

    def total_bytes(self) -> int:
        """Bytes held by cached blobs."""
        return sum(e[1] for e in self.entries())

    def evict(self, keep: str | None = None) -> list[str]:
        """Delete least recently used blobs (never ``keep``) until the total is at most ``max_bytes``."""
        entries = self.entries()
        total = sum(e[1] for e in entries)
        gone = []
        for _, size, key, f in entries:
            if total <= self.max_bytes:
                break
            if key == keep:
                continue
            f.unlink(missing_ok=True)
            total -= size
            gone.append(key)
        return gone

    def _touch(self, f: Path) -> None:
        """Mark ``f`` as just used: an explicit, strictly increasing mtime in ns (the kernel's own clock for a
        bare ``utime`` is coarse, so touches within one tick would tie and LRU order would be lost)."""
        with self._guard:
            self._clock = max(time.time_ns(), self._clock + 1)
            now = self._clock
        os.utime(f, ns=(now, now))

    def _lock_for(self, key: str) -> threading.Lock:
        with self._guard:
            return self._locks.setdefault(key, threading.Lock())
