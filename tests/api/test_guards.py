"""Malformed input is a 4xx naming the field on SQLite and PostgreSQL, never a 500: NUL bytes (query, path, JSON,
multipart fields, config values, service calls), integers beyond int64, deeply nested JSON and safetensors
headers; an unexpected error is a JSON 500 that keeps the keep-alive connection open."""

from __future__ import annotations

import http.client
import json
import struct
from urllib.parse import urlsplit

import pytest

from hub.core.errors import InvalidInputError
from tests.api.util import assert_error, upload

DEEP = 100_000


@pytest.mark.parametrize(("url", "field"), [
    ("/api/v1/adapters?owner=a%00b", "owner"),
    ("/api/v1/adapters?namespace=%00", "namespace"),
    ("/api/v1/search?q=a%00b", "q"),
    ("/api/v1/adapters/al%00ice/upper", "path"),
    ("/api/v1/adapters/alice/upper/files/README.md%00", "path"),
    ("/api/v1/jobs/ab%00c", "path"),
    ("/api/v1/base-models/a%00b", "path"),
])
def test_nul_in_query_or_path_is_422_naming_it(api, url, field):
    err = assert_error(api.client.get(url, headers=api.alice), 422, "invalid_input", "NUL")
    assert err["details"]["field"] == field


@pytest.mark.parametrize(("method", "path", "body", "field"), [
    ("patch", "/api/v1/adapters/alice/upper", {"description": "a\x00b"}, "description"),
    ("patch", "/api/v1/adapters/alice/upper", {"tags": ["ok", "b\x00"]}, "tags[1]"),
    ("post", "/api/v1/compositions", {"task": "x\x00", "base_model": "b"}, "task"),
    ("post", "/api/v1/compositions", {"sources": ["alice/upper"], "params": {"k\x00": 1}}, "params"),
    ("post", "/v1/completions", {"model": "alice/upper", "prompt": "hi\x00"}, "prompt"),
])
def test_nul_in_a_json_body_is_422_naming_the_field(api, adapter_dirs, method, path, body, field):
    assert upload(api.client, api.alice, adapter_dirs[0], "alice/upper").status_code == 201
    r = getattr(api.client, method)(path, headers=api.alice, json=body)
    assert assert_error(r, 422, "invalid_input", "NUL")["details"]["field"] == field


def test_nul_in_multipart_fields_and_config_values_is_422_naming_the_field(api, adapter_dirs):
    """These reach the database guard (the API guard reads JSON bodies only)."""
    c, folder = api.client, adapter_dirs[0]
    err = assert_error(upload(c, api.alice, folder, "alice/d", description="a\x00b"), 422, "invalid_input", "NUL")
    assert err["details"]["field"] == "description"
    readme = {"README.md": ("README.md", b"# hi\x00there\n")}
    err = assert_error(upload(c, api.alice, folder, "alice/r", extra_files=readme), 422, "invalid_input", "NUL")
    assert err["details"]["field"] == "README.md"
    cfg = json.loads((folder / "adapter_config.json").read_text())
    cfg["task_type"] = "CAUSAL_LM\x00"
    files = {"adapter_config.json": ("adapter_config.json", json.dumps(cfg).encode())}
    err = assert_error(upload(c, api.alice, folder, "alice/c", extra_files=files), 422, "invalid_input", "NUL")
    assert err["details"]["field"] == "config"
    assert c.get("/api/v1/adapters").json()["total"] == 0  # nothing half-published


def test_the_database_guard_covers_service_and_cli_paths(hub, adapter_dirs):
    from hub.repositories.adapters import AdapterFilters
    from tests.services.util import files_of

    alice = hub.users.ensure_user("alice")
    with pytest.raises(InvalidInputError, match="NUL") as e:
        hub.publisher.publish(alice, "alice/x", files_of(adapter_dirs[0]), description="a\x00b")
    assert e.value.details["field"] == "description"
    hub.publisher.publish(alice, "alice/x", files_of(adapter_dirs[0]))
    with pytest.raises(InvalidInputError, match="NUL") as e:
        hub.adapters.list(None, AdapterFilters(owner="al\x00ice"))
    assert e.value.details["field"] == "name"  # the owner is matched on the users' name column
    assert hub.adapters.get(None, "alice", "x").description == ""  # the session is usable afterwards


@pytest.mark.parametrize("url", [
    "/api/v1/adapters?offset=9223372036854775808",
    "/api/v1/adapters?min_rank=99999999999999999999",
    "/api/v1/search?q=x&max_rank=9223372036854775808",
    "/api/v1/adapters/alice/upper/files/README.md?version=9223372036854775808",
])
def test_integers_beyond_int64_in_the_query_are_422(api, url):
    r = api.client.get(url)
    assert r.status_code == 422, r.text


def test_integers_beyond_int64_in_json_and_refs_are_4xx(api, adapter_dirs):
    c = api.client
    assert upload(c, api.alice, adapter_dirs[0], "alice/upper").status_code == 201
    r = c.post("/api/v1/generations", headers=api.alice,
               json={"generator": "alice/upper", "task": "t", "seed": 2**64})
    assert assert_error(r, 422, "invalid_input", "out of range")["details"]["field"] == "seed"
    r = c.post("/api/v1/compositions", headers=api.alice,
               json={"sources": ["alice/upper@99999999999999999999"], "method": "linear"})
    assert_error(r, 422, "invalid_input", "version")
    assert c.post("/api/v1/compositions", headers=api.alice,
                  json={"sources": ["alice/upper@9223372036854775807"], "method": "linear"}).status_code == 422


def test_deeply_nested_json_body_is_422(api):
    body = '{"sources": ["alice/upper"], "params": {"a": ' + "[" * DEEP + "]" * DEEP + "}}"
    r = api.client.post("/api/v1/compositions", headers={**api.alice, "content-type": "application/json"},
                        content=body)
    assert assert_error(r, 422, "invalid_input", "nests deeper")["details"]["field"] == "body"


def test_deeply_nested_safetensors_header_and_config_are_422(api, adapter_dirs):
    c, folder = api.client, adapter_dirs[0]
    header = b"[" * DEEP + b"]" * DEEP
    weights = struct.pack("<Q", len(header)) + header
    assert_error(upload(c, api.alice, folder, "alice/deep", weights=weights), 422, "invalid_adapter", "nests too deep")
    cfg = {"adapter_config.json": ("adapter_config.json", b"[" * DEEP + b"]" * DEEP)}
    assert_error(upload(c, api.alice, folder, "alice/deep", extra_files=cfg), 422, "invalid_adapter", "nests too deep")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_an_unexpected_error_is_a_json_500_and_the_connection_survives(make_hub, monkeypatch, caplog):
    from hub.api import create_app
    from tests.helpers import serve_in_thread

    hub = make_hub()

    def boom(*args, **kwargs):
        raise RuntimeError("a bug")

    app = create_app(hub=hub, warm_index=False)
    with serve_in_thread(app) as url:
        conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=30)
        conn.request("GET", "/healthz")
        assert conn.getresponse().read() and conn.sock is not None
        sock = conn.sock
        monkeypatch.setattr(hub.adapters, "list", boom)
        conn.request("GET", "/api/v1/adapters")
        resp = conn.getresponse()
        body = json.loads(resp.read())
        assert resp.status == 500 and body == {"error": {"code": "internal_error", "message": "internal server error",
                                                         "details": {}}}
        assert resp.getheader("connection") != "close"
        monkeypatch.undo()
        conn.request("GET", "/api/v1/adapters")  # the same keep-alive connection
        resp = conn.getresponse()
        assert resp.status == 200 and json.loads(resp.read())["total"] == 0
        assert conn.sock is sock  # not reconnected
        conn.close()
    assert "a bug" in caplog.text  # the 500 is logged with its traceback
