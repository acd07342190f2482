"""End to end with LOOM_BLOB_URL=s3://... against a real (moto) S3 server: publish -> blob in S3 -> pull gives
the same bytes -> the adapter serves a completion; S3 stopped -> publish is a 503 and nothing is registered."""

from __future__ import annotations

import hashlib
import shutil

import pytest
from fastapi.testclient import TestClient

from tests.api.util import assert_error, upload
from tests.storage.s3server import MotoS3

BASE_ID = "loom-test/s3-llama"


@pytest.fixture(scope="module")
def base_and_adapters(tmp_path_factory):
    """A servable byte-level base and two adapters for it."""
    from transformers import AutoModelForCausalLM

    from tests.helpers import make_peft_adapter, save_byte_base

    base = save_byte_base(tmp_path_factory.mktemp("s3base"))
    model = AutoModelForCausalLM.from_pretrained(str(base))
    root = tmp_path_factory.mktemp("s3adapters")
    return base, [make_peft_adapter(model, root / f"a{i}", seed=30 + i, base_id=BASE_ID) for i in range(2)]


@pytest.fixture
def s3_api(make_hub, base_and_adapters):
    """An app whose blobs live in a fresh bucket of its own moto server (stopped by the test)."""
    server = MotoS3()
    bucket = server.new_bucket()
    hub = make_hub(blob_url=f"s3://{bucket}/loom", s3_endpoint=server.endpoint, s3_connect_timeout_s=1.0)
    base = base_and_adapters[0]
    hub.base_models.register(BASE_ID, (base / "config.json").read_bytes(), weights=str(base))
    _, token = hub.users.create_token("alice")
    from hub.api import create_app

    app = create_app(hub=hub, warm_index=False)
    with TestClient(app) as client:
        yield client, {"Authorization": f"Bearer {token}"}, hub, server, bucket
    server.stop()


def _registry(client) -> list:
    return [(a["id"], a["latest_version"]) for a in client.get("/api/v1/adapters").json()["items"]]


def test_publish_pull_serve_and_s3_down(s3_api, base_and_adapters):
    client, alice, hub, server, bucket = s3_api
    folders = base_and_adapters[1]
    weights = (folders[0] / "adapter_model.safetensors").read_bytes()

    r = upload(client, alice, folders[0], "alice/s3", description="stored in S3")
    assert r.status_code == 201, r.text
    key = hashlib.sha256(weights).hexdigest()  # blobs keep their sha256 keys
    assert f"loom/{key[:2]}/{key[2:]}" in server.raw_keys(bucket)  # the blob is in S3 ...
    assert server.raw_get(bucket, f"loom/{key[:2]}/{key[2:]}") == weights
    assert not (hub.settings.data_dir / "blobs").exists()  # ... and not in a local store

    shutil.rmtree(hub.blobs.cache.folder)  # a fresh node: nothing cached, every read goes to S3
    hub.blobs.cache.temp_dir.mkdir(parents=True)
    pulled = client.get("/api/v1/adapters/alice/s3/files/adapter_model.safetensors")
    assert pulled.status_code == 200 and pulled.content == weights

    c = client.post("/v1/completions", json={"model": "alice/s3", "prompt": "Hello", "max_tokens": 4,
                                            "temperature": 0})
    assert c.status_code == 200, c.text
    body = c.json()
    assert body["choices"][0]["finish_reason"] in ("stop", "length") and body["usage"]["completion_tokens"] >= 1
    assert body["loom"]["adapters"] == {"alice/s3@1": 1.0}
    assert hub.blobs.cache.get(key) is not None  # loading fetched the weights into the node's cache

    before = _registry(client)
    server.stop()
    down = upload(client, alice, folders[1], "alice/s3-second")
    err = assert_error(down, 503, "storage_unavailable", "object storage")
    assert err["details"]["operation"] in ("head", "put")
    again = upload(client, alice, folders[1], "alice/s3")  # a new version of an existing adapter: refused too
    assert_error(again, 503, "storage_unavailable")
    assert _registry(client) == before == [("alice/s3", 1)]
    assert list(hub.blobs.temp_dir.iterdir()) == []  # the staged uploads are gone too
    assert_error(client.get("/api/v1/adapters/alice/s3/files/README.md"), 503, "storage_unavailable")
