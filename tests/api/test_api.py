"""The REST API over the registry: contract paths, auth, visibility, errors, uploads."""

from __future__ import annotations

import json

from tests.api.util import assert_error, upload
from tests.services.util import registry_state


def test_error_shape_is_the_same_everywhere(api):
    c = api.client
    assert_error(c.get("/api/v1/nope"), 404, "not_found", "no route")
    assert_error(c.get("/api/v1/search"), 422, "invalid_input", "q")
    assert_error(c.get("/api/v1/search", params={"q": "x", "k": 0}), 422, "invalid_input", "k")
    assert_error(c.get("/api/v1/adapters/ghost/none"), 404, "not_found", "ghost/none")
    assert_error(c.delete("/healthz"), 405, "method_not_allowed")
    err = assert_error(c.get("/api/v1/whoami", headers={"Authorization": "Bearer wrong"}), 401, "unauthenticated")
    assert err["details"] == {}
    assert_error(c.get("/api/v1/whoami", headers={"Authorization": "Basic abc"}), 401, "unauthenticated")
    assert c.get("/api/v1/whoami", headers=api.alice).json() == {"user": "alice"}


def test_publish_read_patch_delete(api, adapter_dirs):
    c = api.client
    r = upload(c, api.alice, adapter_dirs[0], "alice/upper", description="Uppercases text", tags="text,case",
               license="mit", extra_files={"samples.jsonl": ("samples.jsonl", b'{"input":"a","output":"A"}\n')})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["created"] and body["adapter"]["id"] == "alice/upper" and body["version"]["number"] == 1
    assert body["adapter"]["tags"] == ["text", "case"] and body["version"]["rank"] == 4
    assert set(body["version"]["files"]) == {"adapter_config.json", "adapter_model.safetensors", "README.md",
                                            "samples.jsonl"}
    again = upload(c, api.alice, adapter_dirs[0], "alice/upper")
    assert again.status_code == 200 and not again.json()["created"]
    assert upload(c, api.alice, adapter_dirs[2], "alice/upper").json()["version"]["number"] == 2
    assert_error(upload(c, api.bob, adapter_dirs[1], "alice/upper"), 403, "forbidden", "belongs to alice")
    assert_error(upload(c, {}, adapter_dirs[1], "anon/x"), 401, "unauthenticated")

    detail = c.get("/api/v1/adapters/alice/upper").json()
    assert detail["adapter"]["latest_version"] == 2 and detail["latest"]["rank"] == 8
    assert [v["number"] for v in c.get("/api/v1/adapters/alice/upper/versions").json()["items"]] == [1, 2]
    d = c.get("/api/v1/adapters/alice/upper/files/adapter_model.safetensors", params={"version": 1})
    assert d.status_code == 200 and d.content == (adapter_dirs[0] / "adapter_model.safetensors").read_bytes()
    assert d.headers["x-loom-version"] == "1" and int(d.headers["content-length"]) == len(d.content)
    assert_error(c.get("/api/v1/adapters/alice/upper/files/secret.txt"), 404, "not_found", "no file")
    assert_error(c.get("/api/v1/adapters/alice/upper/files/README.md", params={"version": 9}), 404, "not_found")
    assert c.get("/api/v1/adapters/alice/upper").json()["adapter"]["downloads"] == 1

    upload(c, api.bob, adapter_dirs[1], "bob/sql", description="SQL", tags="code", license="apache-2.0")
    listing = c.get("/api/v1/adapters", params={"tag": "code"}).json()
    assert [a["id"] for a in listing["items"]] == ["bob/sql"] and listing["total"] == 1
    assert [a["id"] for a in c.get("/api/v1/adapters", params={"min_rank": 8}).json()["items"]] == ["alice/upper"]
    page = c.get("/api/v1/adapters", params={"limit": 1, "offset": 1}).json()
    assert page["total"] == 2 and len(page["items"]) == 1

    p = c.patch("/api/v1/adapters/alice/upper", headers=api.alice, json={"description": "Makes capitals",
                                                                         "tags": ["caps"]})
    assert p.status_code == 200 and p.json()["description"] == "Makes capitals" and p.json()["tags"] == ["caps"]
    assert_error(c.patch("/api/v1/adapters/alice/upper", headers=api.bob, json={"tags": []}), 403, "forbidden")
    assert_error(c.patch("/api/v1/adapters/alice/upper", headers=api.alice, json={"visibility": "secret"}),
                 422, "invalid_input", "visibility")
    assert_error(c.delete("/api/v1/adapters/alice/upper"), 401, "unauthenticated")
    assert_error(c.delete("/api/v1/adapters/alice/upper", headers=api.bob), 403, "forbidden")
    assert c.delete("/api/v1/adapters/alice/upper", headers=api.alice).status_code == 204
    assert_error(c.get("/api/v1/adapters/alice/upper"), 404, "not_found")


def test_malformed_uploads_get_clear_4xx_and_change_nothing(make_api, adapter_dirs):
    api = make_api(max_upload_bytes=20_000)
    c, good = api.client, adapter_dirs[0]
    before = registry_state(api.hub)
    assert_error(upload(c, api.alice, good, "alice/p", weights_field="adapter_model.bin", weights=b"\x80\x04K\x01."),
                 422, "invalid_adapter", "pickle")
    err = assert_error(upload(c, api.alice, good, "alice/h",
                              weights=b"\x10\x00\x00\x00\x00\x00\x00\x00{bad json}xxxxxx"),
                       422, "invalid_adapter", "header")
    assert err["message"].startswith("adapter_model.safetensors is not"), err  # not the upload's temp file name
    text = upload(c, api.alice, good, "alice/t", weights=b"# a README, not weights\n" * 20)  # the dogfooded case
    assert_error(text, 422, "invalid_adapter", "adapter_model.safetensors is not a valid safetensors file")
    assert_error(upload(c, api.alice, good, "../etc"), 422, "invalid_input", "namespace '..' is not allowed")
    assert_error(upload(c, api.alice, good, "alice/..x"), 422, "invalid_input", "not allowed")
    cfg = json.loads((good / "adapter_config.json").read_text())
    cfg["use_dora"] = True
    assert_error(upload(c, api.alice, good, "alice/d",
                        extra_files={"adapter_config.json": ("adapter_config.json", json.dumps(cfg).encode())}),
                 422, "unsupported_feature", "DoRA")
    assert_error(upload(c, api.alice, good, "alice/big", weights=b"\0" * 30_000), 413, "payload_too_large")
    # a body far over the limit is refused from its Content-Length, before it is read
    assert_error(upload(c, api.alice, good, "alice/huge", weights=b"\0" * 5_000_000), 413, "payload_too_large")
    assert_error(c.post("/api/v1/adapters", headers=api.alice, data={"name": "alice/x"}), 422, "invalid_input",
                 "adapter_config.json")
    assert registry_state(api.hub) == before


def test_private_adapters_are_invisible_to_others(api, adapter_dirs):
    c = api.client
    assert upload(c, api.alice, adapter_dirs[0], "alice/secret", description="Translates legal contracts",
                  visibility="private").status_code == 201
    assert upload(c, api.alice, adapter_dirs[1], "alice/open", description="Writes poems").status_code == 201
    for who in ({}, api.bob):
        assert [a["id"] for a in c.get("/api/v1/adapters", headers=who).json()["items"]] == ["alice/open"]
        hits = c.get("/api/v1/search", params={"q": "legal contract translation"}, headers=who).json()["results"]
        assert [h["adapter"]["id"] for h in hits] == ["alice/open"]
        assert_error(c.get("/api/v1/adapters/alice/secret", headers=who), 404, "not_found")
        assert_error(c.get("/api/v1/adapters/alice/secret/versions", headers=who), 404, "not_found")
        assert_error(c.get("/api/v1/adapters/alice/secret/files/adapter_config.json", headers=who), 404, "not_found")
    assert_error(upload(c, api.bob, adapter_dirs[2], "alice/secret"), 403, "forbidden", "namespace alice")
    mine = c.get("/api/v1/adapters", headers=api.alice).json()["items"]
    assert sorted(a["id"] for a in mine) == ["alice/open", "alice/secret"]
    hits = c.get("/api/v1/search", params={"q": "legal contract translation", "k": 1}, headers=api.alice).json()
    assert hits["results"][0]["adapter"]["id"] == "alice/secret" and hits["results"][0]["score"] > 0.3
    assert c.get("/api/v1/adapters/alice/secret/files/adapter_config.json", headers=api.alice).status_code == 200


def test_base_models_and_shape_checks(api, tiny_model, tmp_path):
    from tests.helpers import make_peft_adapter, pico_llama

    c = api.client
    folder = tmp_path / "pico"
    tiny_model.save_pretrained(str(folder))
    missing = {"id": "loom-test/pico-llama", "config": tiny_model.config.to_dict(), "weights": str(tmp_path / "no")}
    assert_error(c.post("/api/v1/base-models", headers=api.alice, json=missing), 422, "invalid_input",
                 "does not exist")
    body = {"id": "loom-test/pico-llama", "config": tiny_model.config.to_dict(), "weights": str(folder)}
    assert_error(c.post("/api/v1/base-models", json=body), 401, "unauthenticated")
    r = c.post("/api/v1/base-models", headers=api.alice, json=body)
    assert r.status_code == 201 and r.json()["revision"] == "main"
    assert_error(c.post("/api/v1/base-models", headers=api.alice, json=body), 409, "conflict")
    assert_error(c.post("/api/v1/base-models", headers=api.alice, json={"id": "x/y", "config": {"a": 1}}),
                 422, "invalid_input", "model_type")
    assert [b["id"] for b in c.get("/api/v1/base-models").json()["items"]] == ["loom-test/pico-llama"]
    got = c.get("/api/v1/base-models/loom-test/pico-llama", headers=api.alice).json()  # its owner
    assert got["weights"] == str(folder.resolve()) and got["source"] == {"kind": "folder"}
    assert_error(c.get("/api/v1/base-models/nobody/model"), 404, "not_found")
    wide = make_peft_adapter(pico_llama(hidden=64), tmp_path / "wide", seed=4)
    assert_error(upload(c, api.alice, wide, "alice/wide"), 422, "incompatible", "base model loom-test/pico-llama")


def test_openapi_health_metrics(api):
    c = api.client
    spec = c.get("/openapi.json").json()
    ops = [op["operationId"] for path in spec["paths"].values() for op in path.values()]
    assert len(ops) == len(set(ops)) and all(ops)
    for path in ("/api/v1/adapters", "/api/v1/adapters/{namespace}/{name}", "/api/v1/adapters/{namespace}/{name}/versions",
                 "/api/v1/adapters/{namespace}/{name}/files/{filename}", "/api/v1/search", "/healthz", "/metrics",
                 "/api/v1/base-models"):
        assert path in spec["paths"], path
    assert c.get("/docs").status_code == 200
    assert c.get("/healthz").json()["status"] == "ok"
    m = c.get("/metrics")
    assert m.status_code == 200 and m.headers["content-type"].startswith("text/plain")
    assert 'loom_http_requests_total{method="GET",route="/healthz",status="200"} 1.0' in m.text


def test_upload_limit_is_enforced_while_streaming(make_api):
    api = make_api(max_upload_bytes=10_000)  # the body limit is this plus 4 MiB of multipart slack

    def body():  # no Content-Length: the middleware has to count
        yield (b'--b\r\nContent-Disposition: form-data; name="adapter_model.safetensors"; filename="w"\r\n'
               b"Content-Type: application/octet-stream\r\n\r\n")
        for _ in range(100):
            yield b"x" * 65536

    r = api.client.post("/api/v1/adapters", headers={**api.alice, "content-type": "multipart/form-data; boundary=b"},
                        content=body())
    assert_error(r, 413, "payload_too_large", "over the limit")
    assert list((api.hub.blobs.root / "tmp").iterdir()) == []
