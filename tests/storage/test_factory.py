"""open_store builds the store LOOM_BLOB_URL names, and cleans what crashed uploads left on start."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from hub.settings import get_settings
from hub.storage import LocalBlobStore, S3BlobStore, open_store


def test_default_is_the_local_store_under_the_data_dir(tmp_path):
    store = open_store(get_settings(data_dir=tmp_path))
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "blobs"


def test_file_url(tmp_path):
    store = open_store(get_settings(data_dir=tmp_path / "d", blob_url=(tmp_path / "elsewhere").as_uri()))
    assert isinstance(store, LocalBlobStore) and store.root == tmp_path / "elsewhere"


def test_s3_url(tmp_path, moto_s3):
    bucket = moto_s3.new_bucket()
    settings = get_settings(data_dir=tmp_path, blob_url=f"s3://{bucket}/loom/blobs", s3_endpoint=moto_s3.endpoint,
                            blob_cache_bytes=1234)
    store = open_store(settings)
    assert isinstance(store, S3BlobStore) and store.cache.max_bytes == 1234
    assert store.cache.folder == tmp_path / "blob-cache"
    key = store.put_bytes(b"x").key
    assert moto_s3.raw_keys(bucket) == [f"loom/blobs/{key[:2]}/{key[2:]}"]


@pytest.mark.parametrize("url", ["http://x/y", "s3://", "file://otherhost/x", "gs://bucket"])
def test_bad_urls_name_the_setting(tmp_path, url):
    with pytest.raises(InvalidInputError, match="LOOM_BLOB_URL"):
        open_store(get_settings(data_dir=tmp_path, blob_url=url))


def test_env_is_read(tmp_path, monkeypatch):
    monkeypatch.setenv("LOOM_BLOB_URL", (tmp_path / "b").as_uri())
    monkeypatch.setenv("LOOM_BLOB_CACHE_BYTES", "77")
    s = get_settings(data_dir=tmp_path)
    assert s.blob_url == (tmp_path / "b").as_uri() and s.blob_cache_bytes == 77


def test_opening_the_store_removes_temp_files_of_dead_writers(tmp_path):
    """Issue 19 item 7: a kill -9 during uploads leaves temp files; the next start removes them."""
    from hub.storage import staging
    from tests.storage.backends import dead_pid

    settings = get_settings(data_dir=tmp_path)
    store = open_store(settings)
    left = store.temp_dir / f"up-{staging._host()}-{dead_pid()}-abcd1234-q"
    left.write_bytes(b"half an upload")
    out, live = store.temp_file()  # an upload of this (live) process in progress
    open_store(settings)
    assert not left.exists() and live.exists()
    out.close()
