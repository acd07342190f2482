"""Helpers of the API tests."""

from __future__ import annotations

from pathlib import Path


def upload(client, headers, folder: Path, name: str, *, weights_field: str = "adapter_model.safetensors",
           weights: bytes | None = None, extra_files: dict | None = None, **fields):
    """POST a PEFT folder to /api/v1/adapters as multipart."""
    files = {
        "adapter_config.json": ("adapter_config.json", (folder / "adapter_config.json").read_bytes()),
        weights_field: (weights_field, weights if weights is not None else
                        (folder / "adapter_model.safetensors").read_bytes()),
    }
    files.update(extra_files or {})
    data = {"name": name, **{k: v for k, v in fields.items() if v is not None}}
    return client.post("/api/v1/adapters", headers=headers, files=files, data=data)


def assert_error(resp, status: int, code: str, contains: str = "") -> dict:
    """The response is the one error shape with this status and code."""
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message", "details"}, body
    assert body["error"]["code"] == code, body
    assert isinstance(body["error"]["message"], str) and body["error"]["message"]
    assert contains.lower() in body["error"]["message"].lower(), body
    return body["error"]
