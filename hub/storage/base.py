"""What every blob store offers: the :class:`BlobStore` protocol, its keys and its result types.

Keys are lowercase sha256 hex digests of the content and nothing else, so a key can never name a
path outside the store, and the same key always names the same bytes: a store never overwrites a
key (local: rename only when absent; S3: a conditional put with ``If-None-Match: *``).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import BinaryIO, Protocol, runtime_checkable

from hub.core.errors import InvalidInputError, PayloadTooLargeError

KEY_RE = re.compile(r"^[0-9a-f]{64}$")
CHUNK = 1024 * 1024


def validate_key(key: str) -> str:
    """Return ``key`` if it is a sha256 hex digest, else raise InvalidInputError (no path tricks)."""
    if not isinstance(key, str) or not KEY_RE.match(key):
        raise InvalidInputError(f"blob key must be 64 lowercase hex characters, got {key!r}")
    return key


def key_path(key: str) -> str:
    """The relative location of ``key`` in every store: ``ab/cdef...`` (256 fan-out folders)."""
    validate_key(key)
    return f"{key[:2]}/{key[2:]}"


def key_of(relative: str) -> str | None:
    """The key stored at ``ab/cdef...``, or None for anything else (temp files, strays)."""
    head, _, tail = relative.partition("/")
    key = head + tail
    return key if len(head) == 2 and KEY_RE.match(key) else None


@dataclass(frozen=True)
class PutResult:
    """Where content went: its key (sha256), its size, and whether it was new to the store."""

    key: str
    size: int
    created: bool


@dataclass(frozen=True)
class BlobInfo:
    """One stored blob as a listing sees it (fsck compares these against the DB)."""

    key: str
    size: int
    modified: datetime


def copy_hashing(stream: BinaryIO, out: BinaryIO, max_bytes: int | None = None) -> tuple[str, int]:
    """Copy ``stream`` into ``out`` while hashing it; returns (sha256 hex, size) after an fsync of ``out``.

    Raises:
        PayloadTooLargeError: more than ``max_bytes`` bytes (the caller deletes what was written).
    """
    h = hashlib.sha256()
    size = 0
    while chunk := stream.read(CHUNK):
        size += len(chunk)
        if max_bytes is not None and size > max_bytes:
            raise PayloadTooLargeError(f"upload is over the limit of {max_bytes} bytes")
        h.update(chunk)
        out.write(chunk)
    out.flush()
    os.fsync(out.fileno())
    return h.hexdigest(), size


def stage(temp: tuple[BinaryIO, Path], stream: BinaryIO, max_bytes: int | None = None) -> tuple[Path, str, int]:
    """Copy ``stream`` into the open temp file ``temp`` (from a store's ``temp_file()``) while hashing it.

    Returns (temp path, sha256 hex, size); on any failure the temp file is deleted and the error re-raised.
    """
    out, tmp = temp
    try:
        with out:
            key, size = copy_hashing(stream, out, max_bytes)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, key, size


@runtime_checkable
class BlobStore(Protocol):
    """What the services need of a blob store; :class:`~hub.storage.LocalBlobStore` and
    :class:`~hub.storage.S3BlobStore` implement all of it, and one contract suite checks both.

    Reads of a missing key raise :class:`~hub.core.errors.NotFoundError`; a remote store that cannot be
    reached raises :class:`~hub.core.errors.StorageUnavailableError` (HTTP 503).
    """

    #: where :meth:`temp_file` puts uploads in progress (a local folder even for a remote store).
    temp_dir: Path

    def put_bytes(self, data: bytes) -> PutResult:
        """Store ``data`` under its sha256 (a no-op returning ``created=False`` if already there)."""
        ...

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> PutResult:
        """Store what ``stream`` yields; over ``max_bytes`` -> PayloadTooLargeError and nothing stored."""
        ...

    def put_file(self, path: str | os.PathLike[str]) -> PutResult:
        """Store a copy of a local file (the file itself is left alone)."""
        ...

    def temp_file(self) -> tuple[BinaryIO, Path]:
        """An open local temp file for an upload that is hashed by the caller, then :meth:`adopt`-ed."""
        ...

    def adopt(self, tmp: Path, key: str, size: int) -> PutResult:
        """Store a finished :meth:`temp_file` whose sha256 is ``key``; the temp file is consumed."""
        ...

    def exists(self, key: str) -> bool:
        """Whether ``key`` is stored."""
        ...

    def size(self, key: str) -> int:
        """The size of a stored blob in bytes."""
        ...

    def path(self, key: str) -> Path:
        """A local file holding the blob (from the node's read-through cache for a remote store)."""
        ...

    def open(self, key: str) -> BinaryIO:
        """The blob as a readable binary file."""
        ...

    def read_bytes(self, key: str) -> bytes:
        """The whole blob in memory (for small files: configs, manifests, samples)."""
        ...

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """Stream the blob in chunks; a missing key fails here, before the first chunk is asked for."""
        ...

    def delete(self, key: str) -> bool:
        """Remove a blob; False if it was not there."""
        ...

    def keys(self) -> Iterator[str]:
        """Every stored key."""
        ...

    def list_blobs(self) -> Iterator[BlobInfo]:
        """Every stored blob with its size and time of writing, in one listing pass (for fsck)."""
        ...

    def age_seconds(self, key: str) -> float:
        """Seconds since the blob was written (fsck leaves young orphans of in-flight publishes alone)."""
        ...

    def stale_temp_files(self, older_than_s: float) -> list[Path]:
        """Temp files left by a process that died, or older than ``older_than_s`` (see :mod:`.staging`)."""
        ...

    def clean_temp(self, older_than_s: float = 3600.0) -> int:
        """Delete :meth:`stale_temp_files`; returns how many."""
        ...

    def describe(self) -> str:
        """Where the blobs live, for logs and errors (``file:///...`` or ``s3://bucket/prefix``)."""
        ...
