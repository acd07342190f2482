"""loom fsck on either store: missing and orphan blobs (S3 included), and upload temp files a crash left."""

from __future__ import annotations

import pytest

from hub.storage import staging
from hub.storage.base import key_path
from tests.services.util import files_of
from tests.storage.backends import dead_pid


@pytest.fixture(params=["local", "s3"])
def store_hub(request, make_hub):
    if request.param == "local":
        return make_hub(), None
    s3 = request.getfixturevalue("moto_s3")
    bucket = s3.new_bucket()
    return make_hub(blob_url=f"s3://{bucket}/reg", s3_endpoint=s3.endpoint), (s3, bucket)


def test_fsck_missing_orphan_and_stale_temp(store_hub, adapter_dirs):
    hub, s3 = store_hub
    alice = hub.users.ensure_user("alice")
    hub.search.ensure_index()
    hub.publisher.publish(alice, "alice/one", files_of(adapter_dirs[0]), description="first")
    hub.publisher.publish(alice, "alice/two", files_of(adapter_dirs[1]), description="second")
    rep = hub.fsck.run()
    assert rep.ok and rep.store == hub.blobs.describe(), rep.to_dict()

    weights = hub.adapters.version(None, "alice", "two").files["adapter_model.safetensors"]["key"]
    hub.blobs.delete(weights)  # gone from the store (S3 and this node's cache)
    orphan = hub.blobs.put_bytes(b"nobody refers to me").key
    dead = hub.blobs.temp_dir / f"up-{staging._host()}-{dead_pid()}-abcd1234-z"
    dead.write_bytes(b"half an upload")  # what a kill -9 during a publish leaves
    if s3 is not None:
        server, bucket = s3
        server.raw_put(bucket, "reg/tmp/not-a-blob", b"x")  # strays in the bucket are not blobs

    rep = hub.fsck.run()
    assert not rep.ok
    assert rep.missing_blobs == [{"version": "alice/two@1", "file": "adapter_model.safetensors", "key": weights}]
    assert rep.young_orphans == [orphan] and rep.orphan_blobs == []  # within the grace period
    assert rep.stale_temp_files == [dead.name]  # its writer is dead: stale at once

    rep = hub.fsck.run(repair=True, orphan_grace_s=0)
    assert rep.orphan_blobs == [orphan] and not hub.blobs.exists(orphan) and not dead.exists()
    assert any("alice/two" in r for r in rep.repaired) and any("temp file" in r for r in rep.repaired)
    assert [a.full_name for a in hub.adapters.list(None)[0]] == ["alice/one"]
    assert hub.fsck.run().ok
    if s3 is not None:
        assert f"reg/{key_path(orphan)}" not in server.raw_keys(bucket)


def test_fsck_grace_zero_removes_every_temp_file(make_hub):
    """Issue 19 item 7: `fsck --repair --grace 0` used to leave staged uploads in blobs/tmp."""
    hub = make_hub()
    out, live = hub.blobs.temp_file()
    out.close()
    assert hub.fsck.run().stale_temp_files == []  # a live upload of this process, within the grace
    rep = hub.fsck.run(repair=True, orphan_grace_s=0)
    assert rep.stale_temp_files == [live.name] and not live.exists()
