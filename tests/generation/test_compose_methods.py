"""``POST /api/v1/compositions`` with ``"method": "sg_lora" | "icm_lora" | "trans_lora"`` delegates to the
generation service: the same generate / transfer jobs, progress, lineage and card (SQLite and PostgreSQL)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hub.core.errors import InvalidInputError, NotFoundError
from hub.jobs.worker import Worker
from hub.services.compositions import CompositionRequest
from hub.services.generation import TrainGeneratorRequest
from tests.helpers import PICO_BASE_ID
from tests.services.fixtures import *  # noqa: F403
from tests.services.util import files_of


def _run_all(hub):
    w = Worker(hub.queue, hub.handlers, name="test-worker")
    while w.run_once():
        pass


@pytest.fixture
def trained(hub, adapter_dirs, tiny_model):
    """A hub with two adapters of the pico base and an SG-LoRA generator trained on them."""
    alice = hub.users.ensure_user("alice")
    a, b, _ = adapter_dirs
    hub.base_models.register(PICO_BASE_ID, tiny_model.config.to_json_string().encode())
    hub.publisher.publish(alice, "alice/upper", files_of(a), description="convert text to upper case letters")
    hub.publisher.publish(alice, "alice/reverse", files_of(b), description="reverse the order of characters")
    hub.generation.submit_train_generator(alice, TrainGeneratorRequest(
        method="sg_lora", base_model=PICO_BASE_ID, name="alice/gen", params={"steps": 20, "k": 2}))
    _run_all(hub)
    return hub, alice


def test_sg_lora_composition_runs_the_generate_job_with_lineage_and_card(trained):
    hub, alice = trained
    _, token = hub.users.create_token("alice")
    with TestClient(__import__("hub.api", fromlist=["create_app"]).create_app(hub=hub, warm_index=False)) as c:
        r = c.post("/api/v1/compositions", headers={"Authorization": f"Bearer {token}"},
                   json={"task": "make text upper case", "base_model": PICO_BASE_ID, "method": "sg_lora",
                         "params": {"seed": 3}, "name": "alice/made"})
        assert r.status_code == 202, r.text
        job = r.json()
        assert job["kind"] == "generate" and job["request"]["generator"]["name"] == "alice/gen"
        assert "sg_lora" in {m["name"] for m in c.get("/api/v1/compositions/methods").json()}
    _run_all(hub)
    done = hub.jobs.get(job["id"], alice.id)
    assert done.status == "succeeded" and done.progress == 1.0, done.error
    ver = hub.adapters.version(alice, "alice", "made", None)
    assert ver.provenance["method"] == "sg_lora"
    assert {p["name"] for p in ver.provenance["parents"]} >= {"alice/gen"}
    assert "sg_lora" in ver.model_card


def test_generation_methods_check_their_inputs_before_queueing(trained):
    hub, alice = trained
    with pytest.raises(NotFoundError, match="no icm_lora generator"):
        hub.compositions.submit(alice, CompositionRequest(task="t", base_model=PICO_BASE_ID, method="icm_lora"))
    with pytest.raises(InvalidInputError, match="sg_lora generator, not icm_lora"):
        hub.compositions.submit(alice, CompositionRequest(task="t", base_model=PICO_BASE_ID, method="icm_lora",
                                                          params={"generator": "alice/gen"}))
    with pytest.raises(InvalidInputError, match="params"):
        CompositionRequest(task="t", base_model=PICO_BASE_ID, method="sg_lora", params={"density": 0.5})
    with pytest.raises(InvalidInputError, match="give task"):
        CompositionRequest(sources=("alice/upper",), method="sg_lora")
    with pytest.raises(InvalidInputError, match="one source"):
        CompositionRequest(sources=("alice/upper", "alice/reverse"), base_model="x/y", method="trans_lora")
    # trans_lora is the transfer service's job: its own checks answer (a source without seed samples)
    with pytest.raises(InvalidInputError, match="Trans-LoRA needs a few seed examples"):
        hub.compositions.submit(alice, CompositionRequest(sources=("alice/upper",), base_model="loom-test/other",
                                                          method="trans_lora"))
    assert [j.kind for j in hub.jobs.list(alice.id)] == ["train_generator"]  # nothing else queued
