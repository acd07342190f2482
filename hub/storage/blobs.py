"""Content-addressed blob storage.

Keys are lowercase sha256 hex digests of the content and nothing else, so a key can never name a
path outside the store. :class:`LocalBlobStore` lays blobs out as ``<root>/ab/cdef...`` and
writes atomically: a temp file in the same folder, fsync, rename, fsync of the folder. Writing the
same content twice stores it once.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from hub.core.errors import InvalidInputError, NotFoundError, PayloadTooLargeError, StorageError

_KEY_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


def validate_key(key: str) -> str:
    """Return ``key`` if it is a sha256 hex digest, else raise InvalidInputError (no path tricks)."""
    if not isinstance(key, str) or not _KEY_RE.match(key):
        raise InvalidInputError(f"blob key must be 64 lowercase hex characters, got {key!r}")
    return key


@dataclass(frozen=True)
class PutResult:
    """Where content went: its key (sha256), its size, and whether it was new to the store."""

    key: str
    size: int
    created: bool


@runtime_checkable
class BlobStore(Protocol):
    """What the registry needs of a blob store (local disk now; S3 later)."""

    def put_bytes(self, data: bytes) -> PutResult: ...

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> PutResult: ...

    def put_file(self, path: str | os.PathLike[str]) -> PutResult: ...

    def exists(self, key: str) -> bool: ...

    def size(self, key: str) -> int: ...

    def open(self, key: str) -> BinaryIO: ...

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]: ...

    def delete(self, key: str) -> bool: ...

    def keys(self) -> Iterator[str]: ...

    def age_seconds(self, key: str) -> float: ...


class LocalBlobStore:
    """Blobs on the local filesystem under ``root``, content-addressed by sha256."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self._tmp = self.root / "tmp"
        self._tmp.mkdir(exist_ok=True)

    def path(self, key: str) -> Path:
        """The file of ``key`` (validated)."""
        validate_key(key)
        return self.root / key[:2] / key[2:]

    def temp_file(self) -> tuple[BinaryIO, Path]:
        """An open temp file on the store's filesystem (for uploads that are later :meth:`adopt`-ed)."""
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="up-")
        return os.fdopen(fd, "wb"), Path(name)

    def _commit(self, tmp: Path, key: str, size: int) -> PutResult:
        dest = self.path(key)
        if dest.exists():
            tmp.unlink(missing_ok=True)
            return PutResult(key, size, False)
        dest.parent.mkdir(exist_ok=True)
        try:
            os.replace(tmp, dest)
            dfd = os.open(dest.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise StorageError(f"could not store blob {key}: {e}") from e
        return PutResult(key, size, True)

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> PutResult:
        """Copy ``stream`` into the store while hashing it; over ``max_bytes`` -> PayloadTooLargeError."""
        out, tmp = self.temp_file()
        h = hashlib.sha256()
        size = 0
        try:
            with out:
                while chunk := stream.read(CHUNK):
                    size += len(chunk)
                    if max_bytes is not None and size > max_bytes:
                        raise PayloadTooLargeError(f"upload is over the limit of {max_bytes} bytes")
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return self._commit(tmp, h.hexdigest(), size)

    def put_bytes(self, data: bytes) -> PutResult:
        """Store ``data``; returns its key."""
        import io

        return self.put_stream(io.BytesIO(data))

    def put_file(self, path: str | os.PathLike[str]) -> PutResult:
        """Store a copy of the file at ``path`` (the file itself is left alone)."""
        with open(path, "rb") as f:
            return self.put_stream(f)

    def adopt(self, tmp: Path, key: str, size: int) -> PutResult:
        """Move a finished :meth:`temp_file` whose sha256 the caller computed into place (no copy)."""
        validate_key(key)
        if tmp.parent.resolve() != self._tmp.resolve():
            raise StorageError(f"{tmp} is not a temp file of this store")
        return self._commit(tmp, key, size)

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def size(self, key: str) -> int:
        try:
            return self.path(key).stat().st_size
        except FileNotFoundError:
            raise NotFoundError(f"blob {key} is missing from the store") from None

    def open(self, key: str) -> BinaryIO:
        try:
            return self.path(key).open("rb")
        except FileNotFoundError:
            raise NotFoundError(f"blob {key} is missing from the store") from None

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream a blob in chunks (opens the file before the first chunk is asked for)."""
        f = self.open(key)

        def gen() -> Iterator[bytes]:
            with f:
                while chunk := f.read(chunk_size):
                    yield chunk

        return gen()

    def read_bytes(self, key: str) -> bytes:
        with self.open(key) as f:
            return f.read()

    def delete(self, key: str) -> bool:
        """Remove a blob; False if it was not there."""
        try:
            self.path(key).unlink()
            return True
        except FileNotFoundError:
            return False

    def keys(self) -> Iterator[str]:
        """Every stored key (for fsck); stray files that are not blobs are skipped."""
        for sub in sorted(self.root.iterdir()):
            if not sub.is_dir() or len(sub.name) != 2 or sub.name == "tmp":
                continue
            for f in sorted(sub.iterdir()):
                key = sub.name + f.name
                if _KEY_RE.match(key):
                    yield key

    def age_seconds(self, key: str) -> float:
        """Seconds since the blob was written (fsck leaves young orphans of in-flight publishes alone)."""
        return time.time() - self.path(key).stat().st_mtime

    def clean_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete abandoned temp files; returns how many."""
        n = 0
        now = time.time()
        for f in self._tmp.iterdir():
            if now - f.stat().st_mtime >= older_than_s:
                f.unlink(missing_ok=True)
                n += 1
        return n
