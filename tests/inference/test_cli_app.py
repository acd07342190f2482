"""``loom serve-inference``'s app (inference routes only), the CLI command, and lazy imports."""

from __future__ import annotations

import subprocess
import sys

from tests.inference.conftest import BASE_ID


def test_inference_only_app_preloads_and_pins(ihub):
    from fastapi.testclient import TestClient

    from hub.api.routes.openai import create_inference_app

    app = create_inference_app(hub=ihub, preload=[BASE_ID], pin=["alice/math"], device="cpu")
    svc = app.state.inference
    assert BASE_ID in svc.stats()["bases"]  # loaded at start
    assert "alice/math@1" in svc.cpu.keys()
    with TestClient(app) as http:
        r = http.post("/v1/completions", json={"model": "alice/math", "prompt": "Hi", "max_tokens": 3,
                                               "temperature": 0})
        assert r.status_code == 200 and r.json()["loom"]["adapters"] == {"alice/math@1": 1.0}
        assert http.get("/api/v1/adapters").status_code == 404  # no registry API on an inference host
        bad = http.post("/v1/completions", json={"model": "alice/math", "prompt": 3})
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_input"
        # with a device tier of one unpinned slot, the pinned adapter stays while others come and go
        _, gpu, _ = svc.engine(BASE_ID)
        gpu.limit = 1
        for m in ("alice/french", "bob/python"):
            assert http.post("/v1/completions", json={"model": m, "prompt": "Hi", "max_tokens": 2}).status_code == 200
        assert gpu.resident() == ["alice/math@1", "bob/python@1"] and gpu.evictions == 1
        text = http.get("/metrics").text
        assert 'vllm:lora_requests_info{max_lora="16",running_lora_adapters="",waiting_lora_adapters=""}' in text
        assert f'loom_inference_rows_total{{base="{BASE_ID}"}} 3.0' in text


def test_cli_has_serve_inference():
    from typer.testing import CliRunner

    from hub.cli import app

    out = CliRunner().invoke(app, ["serve-inference", "--help"])
    assert out.exit_code == 0 and "--preload" in out.output and "--pin" in out.output


def test_no_heavy_imports():
    code = ("import sys, hub.api.routes.openai, hub.services.inference, hub.cli.server; "
            "print([m for m in ('torch', 'transformers', 'faiss') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
