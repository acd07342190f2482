"""Build the deployment's blob store from settings, and clean what crashed uploads left behind."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from hub.core.errors import InvalidInputError
from hub.storage.base import BlobStore

if TYPE_CHECKING:  # pragma: no cover
    from hub.settings import Settings

log = logging.getLogger("loom.storage")

#: temp files younger than this, written by a process that may still run (another host), are left alone.
TEMP_GRACE_S = 3600.0


def open_store(settings: Settings, *, clean_temp: bool = True) -> BlobStore:
    """The blob store that ``settings.blob_url`` names (see :class:`~hub.settings.Settings`).

    With ``clean_temp`` (the default) it also deletes the temp files that crashed uploads of this node
    left behind (:func:`clean_stale_temp`), so every process that opens the store at start cleans up.

    Raises:
        InvalidInputError: a URL that is neither ``file://`` nor ``s3://bucket[/prefix]``.
        StorageError: ``s3://`` without the ``s3`` extra installed.
    """
    store = _build(settings)
    if clean_temp:
        clean_stale_temp(store)
    return store


def _build(settings: Settings) -> BlobStore:
    from hub.storage.blobs import LocalBlobStore

    url = settings.blob_url
    if not url:
        return LocalBlobStore(settings.blob_dir)
    parts = urlsplit(url)
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise InvalidInputError(f"LOOM_BLOB_URL file:// must name a local folder, got {url!r}")
        return LocalBlobStore(Path(unquote(parts.path)))
    if parts.scheme == "s3":
        if not parts.netloc:
            raise InvalidInputError(f"LOOM_BLOB_URL must be s3://bucket or s3://bucket/prefix, got {url!r}")
        from hub.storage.cache import BlobCache
        from hub.storage.s3 import S3BlobStore

        cache = BlobCache(settings.blob_cache_dir, settings.blob_cache_bytes)
        return S3BlobStore(url, cache, endpoint=settings.s3_endpoint,
                           connect_timeout_s=settings.s3_connect_timeout_s)
    raise InvalidInputError(f"LOOM_BLOB_URL must start with file:// or s3://, got {url!r}")


def clean_stale_temp(store: BlobStore, older_than_s: float = TEMP_GRACE_S) -> int:
    """Delete the temp files of uploads whose writer died (a ``kill -9``) or that are too old.

    Call once when a process that writes blobs starts (``loom serve``, ``loom worker``); files of live
    writers on this host are kept. Returns how many were deleted (and logs it).
    """
    n = store.clean_temp(older_than_s)
    if n:
        log.info("removed %d abandoned upload temp file(s) from %s", n, store.temp_dir)
    return n
