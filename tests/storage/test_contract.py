"""One contract for every blob store: the local folder and S3 (a real moto server on 127.0.0.1)."""

from __future__ import annotations

import hashlib
import io
import os
import time

import pytest

from hub.core.errors import InvalidInputError, NotFoundError, PayloadTooLargeError
from hub.storage.base import CHUNK, BlobStore, key_path
from tests.storage.backends import BACKENDS, dead_pid, make_backend

MISSING = "0" * 64


@pytest.fixture(params=BACKENDS)
def backend(request, tmp_path):
    s3 = request.getfixturevalue("moto_s3") if request.param == "s3" else None
    return make_backend(request.param, tmp_path, s3)


@pytest.fixture
def store(backend):
    return backend.store


def test_is_a_blob_store(store):
    assert isinstance(store, BlobStore)
    assert store.describe().startswith(("file://", "s3://"))


def test_put_get_dedup(store):
    data = b"hello lora" * 1000
    r1 = store.put_bytes(data)
    assert r1.key == hashlib.sha256(data).hexdigest() and r1.size == len(data) and r1.created
    assert store.exists(r1.key) and store.size(r1.key) == len(data)
    assert store.read_bytes(r1.key) == data
    r2 = store.put_stream(io.BytesIO(data))
    assert (r2.key, r2.created) == (r1.key, False)
    assert store.put_bytes(data).created is False
    assert list(store.keys()) == [r1.key]
    assert 0 <= store.age_seconds(r1.key) < 600


def test_put_file_and_temp_adopt(store, tmp_path):
    src = tmp_path / "src.bin"
    src.write_bytes(os.urandom(3000))
    r = store.put_file(src)
    assert src.exists() and store.read_bytes(r.key) == src.read_bytes()
    out, tmp = store.temp_file()
    assert tmp.parent == store.temp_dir
    payload = b"staged upload"
    with out:
        out.write(payload)
    adopted = store.adopt(tmp, hashlib.sha256(payload).hexdigest(), len(payload))
    assert adopted.created and not tmp.exists()
    assert store.read_bytes(adopted.key) == payload
    with pytest.raises(Exception, match="not a temp file"):
        store.adopt(src, r.key, 1)


def test_stream_in_chunks(store):
    data = os.urandom(2 * CHUNK + 123)
    key = store.put_bytes(data).key
    chunks = list(store.iter_bytes(key, chunk_size=CHUNK))
    assert b"".join(chunks) == data and len(chunks) >= 2
    with store.open(key) as f:
        assert f.read(10) == data[:10]
    p = store.path(key)
    assert p.is_file() and p.read_bytes() == data


def test_missing_key_errors(store):
    for call in (store.size, store.open, store.path, store.read_bytes, store.iter_bytes, store.age_seconds):
        with pytest.raises(NotFoundError, match=MISSING):
            call(MISSING)  # iter_bytes fails on the call, before any chunk is asked for
    assert not store.exists(MISSING) and store.delete(MISSING) is False


@pytest.mark.parametrize("key", ["../../etc/passwd", "AB" * 32, "a" * 63, "/" + "a" * 63, "a" * 64 + "/x"])
def test_keys_are_validated(store, key):
    for call in (store.exists, store.open, store.path, store.iter_bytes, store.delete):
        with pytest.raises(InvalidInputError):
            call(key)


def test_existing_key_is_never_overwritten(backend):
    """A put of a key that already exists is refused by the store (S3: If-None-Match: *), not replaced."""
    store = backend.store
    data = b"the real content"
    key = hashlib.sha256(data).hexdigest()
    backend.raw_write(key_path(key), b"someone else's bytes")  # e.g. a racing writer got there first
    res = store.put_bytes(data)
    assert res.key == key and res.created is False
    out, tmp = store.temp_file()
    with out:
        out.write(data)
    assert store.adopt(tmp, key, len(data)).created is False
    assert backend.raw_read(key_path(key)) == b"someone else's bytes"


def test_size_limit_leaves_nothing(store):
    with pytest.raises(PayloadTooLargeError):
        store.put_stream(io.BytesIO(b"x" * 100), max_bytes=99)
    assert list(store.keys()) == [] and list(store.temp_dir.iterdir()) == []


def test_delete_and_listing_skip_strays(backend):
    store = backend.store
    a, b = store.put_bytes(b"a").key, store.put_bytes(b"b").key
    backend.raw_write("ab/not-a-blob", b"x")
    backend.raw_write("README", b"x")
    infos = {i.key: i for i in store.list_blobs()}
    assert set(infos) == {a, b} and infos[a].size == 1
    assert sorted(store.keys()) == sorted([a, b])
    assert store.delete(a) and not store.exists(a) and store.delete(a) is False
    with pytest.raises(NotFoundError):
        store.read_bytes(a)  # not served from a cache either
    assert list(store.keys()) == [b]


def test_stale_temp_files(store):
    """Temp files of a dead writer are stale at once; a live writer's only past the grace period."""
    from hub.storage import staging

    live_out, live = store.temp_file()
    live_out.close()
    host = staging._host()
    dead = store.temp_dir / f"up-{host}-{dead_pid()}-abcd1234-x1"
    dead.write_bytes(b"left by kill -9")
    reborn = store.temp_dir / f"up-{host}-{os.getpid()}-00000000-x2"  # our pid, an earlier run (pid 1 in a container)
    reborn.write_bytes(b"old life")
    foreign = store.temp_dir / "up-otherhost-1-abcd1234-x3"
    foreign.write_bytes(b"another host's upload")
    assert sorted(store.stale_temp_files(3600)) == sorted([dead, reborn])
    old = time.time() - 7200
    os.utime(foreign, (old, old))
    assert store.clean_temp(3600) == 3
    assert sorted(store.temp_dir.iterdir()) == [live]
    assert store.clean_temp(0) == 1 and list(store.temp_dir.iterdir()) == []

