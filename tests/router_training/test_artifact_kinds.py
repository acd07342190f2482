"""Routers and generators are not adapters (#18.7): each has its own page, card and actions; ``/v1/models`` lists
what a request may name (bases, adapters, routers; no generators); ``loom fsck`` knows every kind (a healthy hub
with a router and a generator has no problem) and filters by kind."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from hub.cli import main
from hub.jobs.worker import Worker
from hub.services.generation import TrainGeneratorRequest
from hub.services.router_training import RouterTrainRequest
from tests.router_training.conftest import BASE_ID, EXPERTS, make_app


@pytest.fixture
def kinds_hub(rhub):
    alice = rhub.users.ensure_user("alice")
    rhub.routers.submit(alice, RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS), name="alice/router",
                                                  steps=5, params={"k": 1}))
    rhub.generation.submit_train_generator(alice, TrainGeneratorRequest(
        method="sg_lora", base_model=BASE_ID, name="alice/gen", sources=tuple(EXPERTS), params={"steps": 5, "k": 2}))
    w = Worker(rhub.queue, rhub.handlers, "test")
    while w.run_once():
        pass
    assert [j.status for j in rhub.jobs.list(alice.id)] == ["succeeded", "succeeded"]
    return rhub


def test_router_and_generator_pages_have_their_own_card_and_actions(kinds_hub):
    with TestClient(make_app(kinds_hub)) as c:
        router = c.get("/a/alice/router")
        assert router.status_code == 200
        html = router.text
        assert "Router card" in html and "meteora" in html and "Training steps" in html
        assert 'href="/playground?model=alice/router"' in html
        assert "/a/alice/upper?version=1" in html and "/a/bob/digits?version=1" in html  # the experts
        for adapter_only in ("Compose with this adapter", "Move to another base", "With PEFT", "Rank", "Try it"):
            assert adapter_only not in html, adapter_only
        gen = c.get("/a/alice/gen").text
        assert "Generator card" in gen and "sg_lora" in gen and "Trained on" in gen
        assert 'href="/generate?generator=alice/gen%401"' in gen
        assert "Compose with this adapter" not in gen and "Open in the playground" not in gen
        form = c.get("/generate?generator=alice%2Fgen%401").text
        assert 'value="alice/gen@1"' in form
        adapter = c.get("/a/alice/upper").text  # adapters keep their page
        assert "Compose with this adapter" in adapter and "Router card" not in adapter


def test_v1_models_lists_what_can_answer_and_no_generator(kinds_hub):
    with TestClient(make_app(kinds_hub)) as c:
        ids = {m["id"]: m["loom"]["kind"] for m in c.get("/v1/models").json()["data"]}
        page = c.get("/playground").text  # the playground offers the same: no generator
        too_long = c.post("/v1/completions", json={"model": "alice/upper", "prompt": "hi", "max_tokens": 100_000})
    assert ids.get("alice/router") == "router" and ids.get("alice/upper") == "adapter"
    assert "alice/gen" not in ids
    assert 'value="alice/router"' in page and 'value="alice/upper"' in page and 'value="alice/gen"' not in page
    limit = kinds_hub.settings.inference_max_tokens
    assert f'max="{limit}"' in page  # the Max tokens field stops where the hub does
    assert too_long.status_code == 422 and "LOOM_INFERENCE_MAX_TOKENS" in too_long.text, too_long.text


def test_fsck_knows_every_kind_and_filters_by_kind(kinds_hub, monkeypatch, capsys):
    kinds_hub.search.ensure_index()  # a serving hub has built its index
    rep = kinds_hub.fsck.run()
    assert rep.ok, rep.to_dict()
    assert rep.checked == {"adapter": 4, "router": 1, "generator": 1}
    assert kinds_hub.fsck.run(kinds=("router",)).checked == {"router": 1}
    gen = kinds_hub.adapters.version(None, "alice", "gen")
    kinds_hub.blobs.delete(gen.files["generator.safetensors"]["key"])
    assert kinds_hub.fsck.run(kinds=("router",)).ok
    broken = kinds_hub.fsck.run(kinds=("generator",))
    assert [m["version"] for m in broken.missing_blobs] == ["alice/gen@1"]
    monkeypatch.setenv("LOOM_DATA_DIR", str(kinds_hub.settings.data_dir))
    monkeypatch.setenv("LOOM_DATABASE_URL", kinds_hub.settings.resolved_database_url)
    assert main(["fsck", "--kind", "router", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["checked"] == {"router": 1}
    assert main(["fsck", "--kind", "generator"]) == 1
    out = capsys.readouterr().out
    assert "checked 1 generator" in out and "alice/gen@1" in out
    assert main(["fsck", "--kind", "bogus"]) == 2


def test_routers_and_generators_show_and_pull_through_the_api_and_the_cli(kinds_hub, monkeypatch, capsys, tmp_path):
    """A router's or generator's version has no target modules: ``loom show``/``pull`` and the API's adapter and
    versions routes answer for them as for adapters (they were a 500: ``list(None)``)."""
    from tests.helpers import serve_in_thread

    with serve_in_thread(make_app(kinds_hub)) as url:
        with TestClient(make_app(kinds_hub)) as c:
            for name, kind in (("router", "router"), ("gen", "generator")):
                res = c.get(f"/api/v1/adapters/alice/{name}")
                assert res.status_code == 200, res.text
                assert res.json()["adapter"]["kind"] == kind and res.json()["latest"]["target_modules"] == []
                versions = c.get(f"/api/v1/adapters/alice/{name}/versions")
                assert versions.status_code == 200 and versions.json()["items"][0]["number"] == 1
        monkeypatch.setenv("LOOM_SERVER_URL", url)
        for name in ("router", "gen"):
            assert main(["show", f"alice/{name}"]) == 0, capsys.readouterr().err
            assert f"alice/{name}" in capsys.readouterr().out
            assert main(["pull", f"alice/{name}", str(tmp_path / name)]) == 0, capsys.readouterr().err
            assert any((tmp_path / name).iterdir())
