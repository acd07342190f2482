"""The stores the contract suite runs against, each with a way to write behind the store's back."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from hub.storage import BlobCache, BlobStore, LocalBlobStore, S3BlobStore

BACKENDS = ["local", "s3"]


@dataclass
class Backend:
    """A store under test; ``raw_write``/``raw_read`` touch a location (``ab/cdef...``) without the store."""

    name: str
    store: BlobStore
    raw_write: Callable[[str, bytes], None]
    raw_read: Callable[[str], bytes]


def dead_pid() -> int:
    """The id of a process that has just ended (what a kill -9 leaves behind)."""
    import subprocess
    import sys

    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def make_backend(name: str, tmp_path: Path, s3=None, cache_bytes: int = 1 << 30) -> Backend:
    """A fresh, empty store of kind ``name`` (``s3``: a new bucket on the moto server ``s3``)."""
    if name == "local":
        store = LocalBlobStore(tmp_path / "blobs")

        def raw_local(relative: str, data: bytes) -> None:
            f = store.root / relative
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_bytes(data)

        return Backend(name, store, raw_local, lambda relative: (store.root / relative).read_bytes())
    bucket = s3.new_bucket()
    s3_store = S3BlobStore(f"s3://{bucket}/blobs", BlobCache(tmp_path / "cache", cache_bytes), endpoint=s3.endpoint)
    return Backend(name, s3_store, lambda relative, data: s3.raw_put(bucket, f"blobs/{relative}", data),
                   lambda relative: s3.raw_get(bucket, f"blobs/{relative}"))
