"""The local content-addressed blob store."""

from __future__ import annotations

import hashlib
import io

import pytest

from hub.core.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from hub.storage import LocalBlobStore


def test_put_dedup_stream_delete_keys(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"hello lora" * 1000
    r1 = store.put_bytes(data)
    assert r1.key == hashlib.sha256(data).hexdigest() and r1.size == len(data) and r1.created
    assert store.path(r1.key) == tmp_path / "blobs" / r1.key[:2] / r1.key[2:]
    r2 = store.put_stream(io.BytesIO(data))
    assert r2.key == r1.key and not r2.created
    assert b"".join(store.iter_bytes(r1.key, chunk_size=7)) == data
    other = store.put_bytes(b"other")
    assert sorted(store.keys()) == sorted([r1.key, other.key])
    assert list((tmp_path / "blobs" / "tmp").iterdir()) == []  # no temp files left behind
    assert store.delete(r1.key) and not store.exists(r1.key) and not store.delete(r1.key)
    with pytest.raises(NotFoundError):
        store.open(r1.key)


@pytest.mark.parametrize("key", ["../../etc/passwd", "AB" * 32, "a" * 63, "/" + "a" * 63, "a" * 64 + "/x"])
def test_keys_are_validated(tmp_path, key):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(InvalidInputError):
        store.open(key)


def test_size_limit_leaves_nothing(tmp_path):
    store = LocalBlobStore(tmp_path)
    with pytest.raises(PayloadTooLargeError):
        store.put_stream(io.BytesIO(b"x" * 100), max_bytes=99)
    assert list(store.keys()) == [] and list((tmp_path / "tmp").iterdir()) == []
