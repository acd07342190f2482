"""Upload rules of the hardening issue: ``peft_type`` is required, the base is named by an id and not a path, and
a streamed (chunked) body over the limit is a plain 413, logged without a traceback."""

from __future__ import annotations

import http.client
import json
import logging
from urllib.parse import urlsplit

import pytest

from tests.api.util import assert_error, upload


def _with_config(folder, **changes) -> dict:
    cfg = json.loads((folder / "adapter_config.json").read_text())
    for k, v in changes.items():
        if v is None:
            cfg.pop(k, None)
        else:
            cfg[k] = v
    return {"adapter_config.json": ("adapter_config.json", json.dumps(cfg).encode())}


def test_peft_type_is_required(api, adapter_dirs):
    c, folder = api.client, adapter_dirs[0]
    err = assert_error(upload(c, api.alice, folder, "alice/x", extra_files=_with_config(folder, peft_type=None)),
                       422, "invalid_adapter", "peft_type is required")
    assert err["details"]["field"] == "peft_type"
    assert c.get("/api/v1/adapters").json()["total"] == 0
    assert upload(c, api.alice, folder, "alice/x").status_code == 201


@pytest.mark.parametrize("base", ["../../etc", "/etc/passwd", "~/models/llama", "C:\\models\\llama", "org/../x",
                                  "./local"])
def test_a_base_named_by_a_path_is_refused(api, adapter_dirs, base):
    folder = adapter_dirs[0]
    r = upload(api.client, api.alice, folder, "alice/x", extra_files=_with_config(folder, base_model_name_or_path=base))
    err = assert_error(r, 422, "invalid_adapter", "must be a model id")
    assert err["details"]["field"] == "base_model_name_or_path"


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


MULTIPART = ("/api/v1/adapters", "multipart/form-data; boundary=XX",
             b"--XX\r\nContent-Disposition: form-data; name=\"adapter_model.safetensors\"; filename=\"w\"\r\n\r\n")
JSON = ("/v1/completions", "application/json", b'{"model": "x", "prompt": "')


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
@pytest.mark.parametrize(("path", "ctype", "head"), [MULTIPART, JSON], ids=["multipart", "json"])
def test_a_chunked_body_over_the_limit_is_413_without_a_traceback(make_hub, path, ctype, head):
    from hub.api import create_app
    from hub.api.app import UPLOAD_SLACK
    from tests.helpers import serve_in_thread

    hub = make_hub(max_upload_bytes=1024)
    _, token = hub.users.create_token("alice")
    seen = _Records()
    loggers = [logging.getLogger(n) for n in ("", "uvicorn", "uvicorn.error", "loom.api")]
    for lg in loggers:
        lg.addHandler(seen)
    try:
        with serve_in_thread(create_app(hub=hub, warm_index=False)) as url:
            conn = http.client.HTTPConnection(urlsplit(url).hostname, urlsplit(url).port, timeout=60)
            chunks = [head] + [b"a" * 65536] * ((UPLOAD_SLACK + 2048) // 65536 + 2)
            conn.request("POST", path, body=iter(chunks), encode_chunked=True,
                         headers={"Authorization": f"Bearer {token}", "Transfer-Encoding": "chunked",
                                  "Content-Type": ctype})
            resp = conn.getresponse()
            body = json.loads(resp.read())
            conn.close()
    finally:
        for lg in loggers:
            lg.removeHandler(seen)
    assert resp.status == 413 and body["error"]["code"] == "payload_too_large", body
    assert not [r for r in seen.records if r.exc_info], [r.getMessage() for r in seen.records]
