"""What is particular to the local content-addressed store (the behaviour every store shares is checked by
tests/storage/test_contract.py against the local store and S3)."""

from __future__ import annotations

import hashlib
import io

from hub.storage import LocalBlobStore


def test_layout_and_atomic_writes(tmp_path):
    store = LocalBlobStore(tmp_path / "blobs")
    data = b"hello lora" * 1000
    r1 = store.put_bytes(data)
    assert store.path(r1.key) == tmp_path / "blobs" / r1.key[:2] / r1.key[2:]
    assert r1.key == hashlib.sha256(data).hexdigest()
    assert store.temp_dir == tmp_path / "blobs" / "tmp"
    assert list(store.temp_dir.iterdir()) == []  # no temp files left behind
    assert not store.put_stream(io.BytesIO(data)).created
    assert store.describe() == (tmp_path / "blobs").resolve().as_uri()
