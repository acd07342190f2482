"""What only a remote store has: the node's bounded read-through cache, and an S3 server that is down."""

from __future__ import annotations

import hashlib
import os

import pytest

from hub.core.errors import StorageError, StorageUnavailableError
from hub.storage import BlobCache, S3BlobStore
from hub.storage.base import key_path
from tests.storage.backends import make_backend
from tests.storage.s3server import MotoS3


def _cache(store) -> BlobCache:
    return store.cache


def test_read_through_cache_is_bounded_lru(moto_s3, tmp_path):
    b = make_backend("s3", tmp_path, moto_s3, cache_bytes=2500)
    store, cache = b.store, _cache(b.store)
    blobs = [os.urandom(1000) for _ in range(3)]
    a, bb, c = (store.put_bytes(x).key for x in blobs)  # put_bytes does not fill the cache
    assert cache.entries() == []
    assert store.path(a).read_bytes() == blobs[0] and store.path(bb).read_bytes() == blobs[1]
    assert (cache.hits, cache.misses) == (0, 2)
    store.path(a)  # a is now the most recently used
    assert (cache.hits, cache.misses) == (1, 2)
    store.path(c)  # over the bound: the least recently used (bb) goes
    assert {e[2] for e in cache.entries()} == {a, c} and cache.total_bytes() <= 2500
    # served from the cache: S3 is not asked again (its object is changed behind our back; the cached copy answers)
    b.raw_write(key_path(a), b"changed behind our back")
    assert store.read_bytes(a) == blobs[0]
    assert store.path(bb).read_bytes() == blobs[1] and cache.misses == 4  # evicted, so fetched again


def test_uploads_land_in_the_cache(moto_s3, tmp_path):
    store = make_backend("s3", tmp_path, moto_s3).store
    f = tmp_path / "w.bin"
    f.write_bytes(os.urandom(5000))
    key = store.put_file(f).key
    assert store.path(key).read_bytes() == f.read_bytes()
    assert (_cache(store).hits, _cache(store).misses) == (1, 0)
    assert list(store.temp_dir.iterdir()) == []


def test_a_blob_larger_than_the_cache_is_still_served(moto_s3, tmp_path):
    b = make_backend("s3", tmp_path, moto_s3, cache_bytes=10)
    key = b.store.put_bytes(b"x" * 100).key
    assert b.store.path(key).read_bytes() == b"x" * 100


def test_a_download_that_does_not_match_its_key_is_refused(moto_s3, tmp_path):
    b = make_backend("s3", tmp_path, moto_s3)
    key = hashlib.sha256(b"what the key promises").hexdigest()
    b.raw_write(key_path(key), b"something else")
    with pytest.raises(StorageError, match="other content"):
        b.store.path(key)
    assert _cache(b.store).entries() == [] and list(b.store.temp_dir.iterdir()) == []


def test_cache_bound_is_validated(tmp_path):
    with pytest.raises(ValueError, match="max_bytes"):
        BlobCache(tmp_path, -1)


def test_s3_down_is_storage_unavailable(tmp_path):
    """Every call fails fast with the 503 error (exists() included: down is not 'missing'); cached blobs still read."""
    server = MotoS3()
    try:
        bucket = server.new_bucket()
        store = S3BlobStore(f"s3://{bucket}", BlobCache(tmp_path / "c", 1 << 20), endpoint=server.endpoint,
                            connect_timeout_s=1.0)
        key = store.put_bytes(b"kept").key
        store.path(key)
    finally:
        server.stop()
    assert store.read_bytes(key) == b"kept"  # from the node's cache
    calls = [lambda: store.put_bytes(b"new"), lambda: store.exists(key), lambda: store.size(key),
             lambda: list(store.list_blobs()), lambda: store.iter_bytes("1" * 64), lambda: store.path("1" * 64),
             lambda: store.delete(key)]
    for call in calls:
        with pytest.raises(StorageUnavailableError, match=f"object storage s3://{bucket} is unavailable") as e:
            call()
        assert "http://" not in str(e.value)  # the reason, without the server's address
    assert list(store.temp_dir.iterdir()) == []
