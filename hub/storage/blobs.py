"""The local content-addressed blob store (the default, ``LOOM_BLOB_URL=file://...``).

Blobs lie as ``<root>/ab/cdef...`` and are written atomically: a temp file in ``<root>/tmp`` (same
filesystem), fsync, rename into place only if absent, fsync of the folder. Writing the same content
twice stores it once; an existing key is never replaced.
"""

from __future__ import annotations

import errno
import io
import os
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from hub.core.errors import NotFoundError, StorageError
from hub.storage import staging
from hub.storage.base import CHUNK, BlobInfo, PutResult, key_of, key_path, stage, validate_key


def missing(key: str) -> NotFoundError:
    """The one error for a key that is not stored."""
    return NotFoundError(f"blob {key} is missing from the store", key=key)


class LocalBlobStore:
    """Blobs on the local filesystem under ``root``, content-addressed by sha256.

    Args:
        root: the store's folder (created if needed).
    """

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.temp_dir = self.root / "tmp"
        self.temp_dir.mkdir(exist_ok=True)

    def describe(self) -> str:
        return self.root.resolve().as_uri()

    def _file(self, key: str) -> Path:
        return self.root / key_path(key)

    def path(self, key: str) -> Path:
        """The file of ``key``; NotFoundError if it is not stored."""
        f = self._file(key)
        if not f.is_file():
            raise missing(key)
        return f

    def temp_file(self) -> tuple[BinaryIO, Path]:
        """An open temp file on the store's filesystem (for uploads that are later :meth:`adopt`-ed)."""
        return staging.new_temp_file(self.temp_dir)

    def _commit(self, tmp: Path, key: str, size: int) -> PutResult:
        dest = self._file(key)
        if dest.exists():
            tmp.unlink(missing_ok=True)
            return PutResult(key, size, False)
        dest.parent.mkdir(exist_ok=True)
        try:
            _link_if_absent(tmp, dest)
        except FileExistsError:
            tmp.unlink(missing_ok=True)
            return PutResult(key, size, False)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"could not store blob {key}: {e}") from e
        dfd = os.open(dest.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
        return PutResult(key, size, True)

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> PutResult:
        """Copy ``stream`` into the store while hashing it; over ``max_bytes`` -> PayloadTooLargeError."""
        tmp, key, size = stage(self.temp_file(), stream, max_bytes)
        return self._commit(tmp, key, size)

    def put_bytes(self, data: bytes) -> PutResult:
        """Store ``data``; returns its key."""
        return self.put_stream(io.BytesIO(data))

    def put_file(self, path: str | os.PathLike[str]) -> PutResult:
        """Store a copy of the file at ``path`` (the file itself is left alone)."""
        with open(path, "rb") as f:
            return self.put_stream(f)

    def adopt(self, tmp: Path, key: str, size: int) -> PutResult:
        """Move a finished :meth:`temp_file` whose sha256 the caller computed into place (no copy)."""
        validate_key(key)
        if tmp.parent.resolve() != self.temp_dir.resolve():
            raise StorageError(f"{tmp} is not a temp file of this store")
        return self._commit(tmp, key, size)

    def exists(self, key: str) -> bool:
        return self._file(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self._file(key).stat().st_size
        except FileNotFoundError:
            raise missing(key) from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self._file(key).open("rb")
        except FileNotFoundError:
            raise missing(key) from None

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream a blob in chunks (opens the file before the first chunk is asked for)."""
        return file_chunks(self.open(key), chunk_size)

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def delete(self, key: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self._file(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob with size and mtime; stray files that are not blobs are skipped."""
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2:
                continue
            for f in sorted(sub.iterdir()):
                key = key_of(f"{sub.name}/{f.name}")
                if key is None:
                    continue
                try:
                    st = f.stat()
                except FileNotFoundError:  # deleted meanwhile
                    continue
                yield BlobInfo(key, st.st_size, datetime.fromtimestamp(st.st_mtime, UTC))

    def keys(self) -> Iterator[str]:
        """Every stored key (for fsck)."""
        return (b.key for b in self.list_blobs())

    def age_seconds(self, key: str) -> float:
        """Seconds since the blob was written."""
        try:
            return time.time() - self._file(key).stat().st_mtime
        except FileNotFoundError:
            raise missing(key) from None

    def stale_temp_files(self, older_than_s: float) -> list[Path]:
        """Temp files whose writer died, or older than ``older_than_s``."""
        return staging.stale_files(self.temp_dir, older_than_s)

    def clean_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete abandoned temp files; returns how many."""
        return staging.remove(self.stale_temp_files(older_than_s))


def _link_if_absent(tmp: Path, dest: Path) -> None:
    """Move ``tmp`` to ``dest`` unless ``dest`` exists (FileExistsError): a hard link, then unlink the temp.

    Filesystems without hard links get a rename (content-addressed, so a lost race writes the same bytes).
    """
    try:
        os.link(tmp, dest)
    except OSError as e:
        if e.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
        os.replace(tmp, dest)
        return
    tmp.unlink(missing_ok=True)


def file_chunks(f: BinaryIO, chunk_size: int) -> Iterator[bytes]:
    """Yield ``f`` in chunks and close it at the end (or when the consumer stops)."""
    with f:
        while chunk := f.read(chunk_size):
            yield chunk
