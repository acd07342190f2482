"""Blobs in an S3-compatible object store (``LOOM_BLOB_URL=s3://bucket/prefix``), through ``obstore``.

Objects lie at ``<prefix>/ab/cdef...`` (the local store's layout). Every write is a conditional put
(``If-None-Match: *``): a key that exists is never overwritten, and a put that loses the race is
reported as ``created=False``. obstore sends a conditional put as one request, so the upload is held
in memory while it is sent (at most ``LOOM_MAX_UPLOAD_BYTES``; S3 takes up to 5 GiB in one put).
Downloads stream. Reads that need a file (``path``, ``open``, ``read_bytes``) go through the node's
:class:`~hub.storage.cache.BlobCache`; uploads are moved into that cache after they are stored, so the
node that published a blob does not download it again.

Credentials and the region come from the standard AWS variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_SESSION_TOKEN``, ``AWS_REGION``/``AWS_DEFAULT_REGION``) or the other
sources obstore reads (web identity, ECS/EKS container credentials). Any failure to reach the store
is a :class:`~hub.core.errors.StorageUnavailableError` (HTTP 503) with the reason; obstore is imported
only when an S3 store is built (the ``s3`` extra).
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, BinaryIO, NoReturn, TypeVar

from hub.core.errors import StorageError, StorageUnavailableError
from hub.storage import staging
from hub.storage.base import CHUNK, BlobInfo, PutResult, key_of, key_path, stage, validate_key
from hub.storage.blobs import file_chunks, missing
from hub.storage.cache import BlobCache

log = logging.getLogger("loom.storage")
T = TypeVar("T")
_URL = re.compile(r"https?://\S+")


def _import_obstore() -> Any:
    try:
        import obstore
    except ImportError:  # pragma: no cover - the s3 extra is part of the test install
        raise StorageError("LOOM_BLOB_URL=s3://... needs obstore: pip install 'loom-hub[s3]'") from None
    return obstore


class S3BlobStore:
    """Content-addressed blobs in an S3 bucket, with a bounded local read-through cache.

    Args:
        url: ``s3://bucket`` or ``s3://bucket/prefix``.
        cache: the node's cache of downloaded blobs (also where uploads are staged).
        endpoint: an S3-compatible server (``http://seaweedfs:8333``); None: AWS.
        connect_timeout_s: how long to wait for a connection; with a few quick retries this bounds how
            long a request takes to fail when the store is down.
        request_timeout_s: the limit on one request, body included (large uploads need time).
        max_retries: retries of a failed request (obstore retries 5xx, timeouts and connection errors).
    """

    def __init__(self, url: str, cache: BlobCache, *, endpoint: str | None = None,
                 connect_timeout_s: float = 5.0, request_timeout_s: float = 900.0, max_retries: int = 2) -> None:
        obstore = _import_obstore()
        from obstore.store import S3Store

        self.url = url.rstrip("/")
        self.endpoint = endpoint
        self.cache = cache
        self.temp_dir = cache.temp_dir
        self._obs = obstore
        self._already_exists = obstore.exceptions.AlreadyExistsError
        self._obs_error = obstore.exceptions.BaseError
        client: dict[str, Any] = {"connect_timeout": timedelta(seconds=connect_timeout_s),
                                  "timeout": timedelta(seconds=request_timeout_s)}
        if endpoint is not None and endpoint.startswith("http://"):
            client["allow_http"] = True
        retry = {"max_retries": max_retries, "retry_timeout": timedelta(seconds=max(30.0, 3 * connect_timeout_s)),
                 "backoff": {"init_backoff": timedelta(milliseconds=100), "max_backoff": timedelta(seconds=2),
                             "base": 2.0}}
        kwargs: dict[str, Any] = {"client_options": client, "retry_config": retry}
        if endpoint is not None:
            kwargs["endpoint"] = endpoint
        try:
            self.store = S3Store.from_url(self.url, **kwargs)
        except (ValueError, self._obs_error) as e:
            raise StorageError(f"cannot use LOOM_BLOB_URL={self.url}: {e}") from None

    def describe(self) -> str:
        return self.url + (f" at {self.endpoint}" if self.endpoint else "")

    # -- error translation -------------------------------------------------------------------------

    def _fail(self, op: str, key: str | None, e: BaseException) -> NoReturn:
        if isinstance(e, FileNotFoundError) and key is not None:
            raise missing(key) from None
        log.warning("object storage %s failed on %s %s: %s", self.describe(), op, key or "", e)
        exc = self._obs.exceptions
        if isinstance(e, exc.PermissionDeniedError | exc.UnauthenticatedError):
            reason = "it refused Loom's credentials (check AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)"
        else:  # the first line, without the server's address or the XML body of the answer
            first = str(e).splitlines()[0] if str(e) else type(e).__name__
            reason = _URL.sub("", first.split(": <?xml")[0]).replace("  ", " ").strip()
        raise StorageUnavailableError(f"object storage {self.url} is unavailable ({op}): {reason}",
                                      store=self.url, operation=op) from None

    def _call(self, op: str, key: str | None, fn: Callable[[], T]) -> T:
        try:
            return fn()
        except (FileNotFoundError, self._obs_error, OSError, RuntimeError) as e:
            self._fail(op, key, e)

    # -- writes ------------------------------------------------------------------------------------

    def _put(self, key: str, body: bytes | Path) -> bool:
        """Conditional put; True if this call created the object, False if it was there already."""
        try:
            self._obs.put(self.store, key_path(key), body, mode="create")
            return True
        except self._already_exists:
            return False
        except (self._obs_error, OSError, RuntimeError) as e:
            self._fail("put", key, e)

    def put_bytes(self, data: bytes) -> PutResult:
        """Store ``data`` with one conditional put."""
        key = hashlib.sha256(data).hexdigest()
        return PutResult(key, len(data), self._put(key, data))

    def temp_file(self) -> tuple[BinaryIO, Path]:
        """An open temp file in the node's cache folder (adopted into the cache after the upload)."""
        return staging.new_temp_file(self.temp_dir)

    def adopt(self, tmp: Path, key: str, size: int) -> PutResult:
        """Upload a finished :meth:`temp_file` (skipped if the key is already stored), then cache it."""
        validate_key(key)
        if tmp.parent.resolve() != self.temp_dir.resolve():
            raise StorageError(f"{tmp} is not a temp file of this store")
        try:
            created = False if self.exists(key) else self._put(key, tmp)
            self.cache.insert(tmp, key)
        finally:
            tmp.unlink(missing_ok=True)
        return PutResult(key, size, created)

    def put_stream(self, stream: BinaryIO, max_bytes: int | None = None) -> PutResult:
        """Stage ``stream`` locally while hashing it, then upload it; over ``max_bytes`` nothing is stored."""
        tmp, key, size = stage(self.temp_file(), stream, max_bytes)
        return self.adopt(tmp, key, size)

    def put_file(self, path: str | os.PathLike[str]) -> PutResult:
        """Store a copy of a local file."""
        with open(path, "rb") as f:
            return self.put_stream(f)

    # -- reads -------------------------------------------------------------------------------------

    def _head(self, key: str) -> dict:
        return self._call("head", key, lambda: self._obs.head(self.store, key_path(key)))

    def exists(self, key: str) -> bool:
        try:
            self._head(key)
            return True
        except LookupError:
            return False

    def size(self, key: str) -> int:
        return int(self._head(key)["size"])

    def age_seconds(self, key: str) -> float:
        return (datetime.now(UTC) - self._head(key)["last_modified"]).total_seconds()

    def _stream(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """GET ``key`` now (errors surface here), then yield its body as it arrives."""
        res = self._call("get", key, lambda: self._obs.get(self.store, key_path(key)))

        def chunks() -> Iterator[bytes]:
            it = iter(res.stream(min_chunk_size=chunk_size))
            while True:
                try:
                    chunk = next(it)
                except StopIteration:
                    return
                except (self._obs_error, OSError, RuntimeError) as e:
                    self._fail("get", key, e)
                yield bytes(chunk)

        return chunks()

    def path(self, key: str) -> Path:
        """The blob as a local file, downloaded into the cache on a miss."""
        validate_key(key)
        return self.cache.fetch(key, lambda: self._stream(key))

    def open(self, key: str) -> BinaryIO:
        return self.path(key).open("rb")

    def read_bytes(self, key: str) -> bytes:
        return self.path(key).read_bytes()

    def iter_bytes(self, key: str, chunk_size: int = CHUNK) -> Iterator[bytes]:
        """From the cache when it holds the blob, else streamed from S3 (not cached: downloads pass through)."""
        validate_key(key)
        cached = self.cache.get(key)
        if cached is not None:
            try:
                return file_chunks(cached.open("rb"), chunk_size)
            except FileNotFoundError:  # evicted meanwhile
                pass
        return self._stream(key, chunk_size)

    # -- housekeeping ------------------------------------------------------------------------------

    def delete(self, key: str) -> bool:
        """Remove a blob from S3 and from this node's cache; False if S3 did not have it."""
        there = self.exists(key)
        if there:
            self._call("delete", key, lambda: self._obs.delete(self.store, key_path(key)))
        self.cache.discard(key)
        return there

    def list_blobs(self) -> Iterator[BlobInfo]:
        """One listing of the bucket prefix; objects that are not blobs are skipped."""
        try:
            for batch in self._obs.list(self.store, chunk_size=1000):
                for meta in batch:
                    key = key_of(meta["path"])
                    if key is not None:
                        yield BlobInfo(key, int(meta["size"]), meta["last_modified"])
        except (self._obs_error, OSError, RuntimeError) as e:
            self._fail("list", None, e)

    def keys(self) -> Iterator[str]:
        return (b.key for b in self.list_blobs())

    def stale_temp_files(self, older_than_s: float) -> list[Path]:
        """Local temp files (uploads and downloads in progress) whose writer died, or too old."""
        return staging.stale_files(self.temp_dir, older_than_s)

    def clean_temp(self, older_than_s: float = 3600.0) -> int:
        return staging.remove(self.stale_temp_files(older_than_s))
