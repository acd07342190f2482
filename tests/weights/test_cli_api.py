"""`loom base add ID --weights X` and `POST /api/v1/base-models` with a Hugging Face id or a .gguf file and no
config: the pinned sha / GGUF hash shown; bad weights are a 4xx (one line and exit 1 in the CLI), nothing
registered."""

from __future__ import annotations

import json

import pytest

from tests.helpers import serve_in_thread
from tests.weights.gguf_files import write_llama_gguf
from tests.weights.test_hf import REPO, _seed_base

pytestmark = pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)


@pytest.fixture
def live(make_hub, fake_hub, capsys, monkeypatch, tmp_path):  # noqa: F811
    """(run, client, hub): ``run(*args)`` runs ``loom --server URL --token <alice> ...`` -> (rc, out, err)."""
    from fastapi.testclient import TestClient

    from hub import cli
    from hub.api import create_app

    monkeypatch.delenv("LOOM_TOKEN", raising=False)
    h = make_hub(hf_endpoint=fake_hub.url, weights_roots=[tmp_path])
    _, token = h.users.create_token("alice")
    app = create_app(hub=h, warm_index=False)
    with serve_in_thread(app) as url:

        def run(*args: str) -> tuple[int, str, str]:
            capsys.readouterr()
            rc = cli.main(["--server", url, "--token", token, *args])
            out = capsys.readouterr()
            return rc, out.out, out.err

        with TestClient(app) as client:
            client.headers["Authorization"] = f"Bearer {token}"
            yield run, client, h


def test_cli_and_api_register_from_hf_and_gguf(live, fake_hub, tiny_base, tmp_path):
    run, client, h = live
    model, folder = tiny_base
    sha = _seed_base(fake_hub, folder)
    rc, out, err = run("base", "add", "loom-test/from-hf", "--weights", REPO)
    assert rc == 0, err
    said = " ".join(out.split())  # rich wraps long lines
    assert f"registered base model loom-test/from-hf@{sha} (Hugging Face {REPO} at commit {sha})" in said

    gguf = write_llama_gguf(tmp_path / "tiny.gguf", model)
    r = client.post("/api/v1/base-models", json={"id": "loom-test/from-gguf", "weights": str(gguf)})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["revision"] == "main" and body["source"]["kind"] == "gguf" and body["config"]["model_type"] == "llama"
    rc, out, err = run("base", "ls", "--json")
    assert rc == 0 and {b["id"]: b["source"]["kind"] for b in json.loads(out)} == {
        "loom-test/from-hf": "hf", "loom-test/from-gguf": "gguf"}


def test_bad_weights_are_4xx_and_one_line(live, fake_hub, tiny_base, tmp_path):
    run, client, h = live
    _, folder = tiny_base
    _seed_base(fake_hub, folder)
    rc, out, err = run("base", "add", "x/missing", "--weights", "loom-org/missing")
    said = " ".join(err.split())  # one message (rich wraps it at the console width), no traceback
    assert rc == 1 and err.count("error (") == 1 and "Traceback" not in err
    assert "Hugging Face repository loom-org/missing is not visible without a token: it does not exist" in said
    rc, _, err = run("base", "add", "x/norev", "--weights", f"{REPO}@nope")
    assert rc == 1 and "error (not_found)" in err and "revision 'nope'" in err
    rc, _, err = run("base", "add", "x/nothing")
    assert rc == 1 and "error (invalid_input)" in err and "config" in err
    r = client.post("/api/v1/base-models", json={"id": "x/gone", "weights": str(tmp_path / "gone.gguf")})
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_input"
    assert "does not exist" in r.json()["error"]["message"]
    r = client.post("/api/v1/base-models", json={"id": "x/norev", "weights": f"{REPO}@nope"})
    assert r.status_code == 404 and "nope" in r.json()["error"]["message"]
    assert client.get("/api/v1/base-models").json()["items"] == []
