"""Bases whose weights the hub holds can be downloaded (#18.9): ``GET /api/v1/base-models/{id}/files`` and one
file at a time, ``loom base pull <id> <dir>`` (a folder transformers loads), a download on the base page
``/b/<id>``, and the adapter page's "With PEFT" snippet uses it. Only the files of a loadable folder are offered,
and only for weights inside the hub's data directory."""

from __future__ import annotations

import shutil

import pytest
import torch

from hub.cli import main
from tests.helpers import serve_in_thread
from tests.router_training.conftest import (
    BASE_ID,
    SAMPLES,
    db_templates,  # noqa: F401
    make_app,
    publish,
)


@pytest.fixture
def held(tmp_path, db_templates, base_dir, expert_dirs):  # noqa: F811
    """A hub holding its base's weights in its data directory (plus files a download must not offer)."""
    from hub.services.container import Hub
    from hub.settings import get_settings

    with db_templates.database("sqlite", tmp_path) as url:
        hub = Hub(get_settings(data_dir=tmp_path / "data", database_url=url), migrate=False)
        folder = shutil.copytree(base_dir, tmp_path / "data" / "weights" / "held")
        (folder / "secret.txt").write_text("not a model file")
        (folder / "pytorch_model.bin").write_bytes(b"a pickle")
        hub.base_models.register(BASE_ID, weights=str(folder))
        hub.base_models.register("loom-test/elsewhere", weights=str(base_dir))  # outside the data dir
        publish(hub, expert_dirs["alice/upper"], "alice/upper", SAMPLES["alice/upper"], description="upper")
        try:
            yield hub, folder
        finally:
            hub.close()


def test_files_route_offers_a_loadable_folder_and_nothing_else(held):
    hub, folder = held
    from fastapi.testclient import TestClient

    with TestClient(make_app(hub)) as c:
        body = c.get(f"/api/v1/base-models/{BASE_ID}/files").json()
        names = [f["name"] for f in body["items"]]
        assert "config.json" in names and "model.safetensors" in names and "tokenizer_config.json" in names
        assert "secret.txt" not in names and "pytorch_model.bin" not in names
        one = c.get(body["items"][names.index("config.json")]["url"])
        assert one.status_code == 200 and one.content == (folder / "config.json").read_bytes()
        assert c.get(f"/api/v1/base-models/{BASE_ID}/files/secret.txt").status_code == 404
        assert c.get(f"/api/v1/base-models/{BASE_ID}/files/..%2Fheld%2Fconfig.json").status_code == 404
        far = c.get("/api/v1/base-models/loom-test/elsewhere/files")
        assert far.status_code == 404 and "does not hold the weights" in far.json()["error"]["message"]
        assert c.get(f"/api/v1/base-models/{BASE_ID}").json()["id"] == BASE_ID  # the plain route still works
        page = c.get(f"/b/{BASE_ID}").text
        assert f"loom base pull {BASE_ID} ./" in page and f"/api/v1/base-models/{BASE_ID}/files/config.json" in page
        assert "does not hold the weights" in c.get("/b/loom-test/elsewhere").text
        assert f'href="/b/{BASE_ID}"' in c.get("/bases").text
        snippet = c.get("/a/alice/upper").text
        assert f"loom base pull {BASE_ID} ./loom-test-router-llama" in snippet
        assert 'from_pretrained("./loom-test-router-llama")' in snippet


def test_loom_base_pull_writes_a_folder_transformers_loads(held, tmp_path, capsys):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hub, folder = held
    with serve_in_thread(make_app(hub)) as url:
        assert main(["--server", url, "base", "pull", BASE_ID, str(tmp_path / "pulled")]) == 0
        assert main(["--server", url, "base", "pull", "loom-test/elsewhere", str(tmp_path / "no")]) == 1
    assert "does not hold the weights" in capsys.readouterr().err
    pulled = tmp_path / "pulled"
    assert not (pulled / "secret.txt").exists() and not list(pulled.glob("*.part"))
    a = AutoModelForCausalLM.from_pretrained(str(pulled))
    b = AutoModelForCausalLM.from_pretrained(str(folder))
    for (n, p), (_, q) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert torch.equal(p, q), n
    tok = AutoTokenizer.from_pretrained(str(pulled))
    assert tok("hello")["input_ids"] == AutoTokenizer.from_pretrained(str(folder))("hello")["input_ids"]
