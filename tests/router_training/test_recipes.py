"""Router recipes (#18.10): `loom router train` as the README writes it trains with the settings that route on hub
adapters (request-embedding + hashed-word gates, a supervised gate loss, top-1 for MeteoRA); the paper's settings
are `--recipe paper`; explicit params override either."""

from __future__ import annotations

import pytest

from hub.core.errors import InvalidInputError
from hub.jobs.worker import Worker
from hub.services.router_training import RouterTrainRequest
from tests.router_training.conftest import EXPERTS


def _submit(hub, name, **kw):
    alice = hub.users.ensure_user("alice")
    job, _ = hub.routers.submit(alice, RouterTrainRequest(preset=kw.pop("preset", "meteora"), experts=tuple(EXPERTS),
                                                          name=name, **kw))
    return alice, job


def test_the_default_recipe_is_the_one_that_routes_and_paper_is_named(rhub):
    _, hub_job = _submit(rhub, "alice/r-hub", steps=40)
    cfg = hub_job.request["config"]
    assert cfg["features"] == "embedding" and cfg["lexical_dim"] == 4096 and cfg["k"] == 1
    assert hub_job.request["train"] == {"lr": 3e-2} and hub_job.request["recipe"] == "hub"
    _, paper = _submit(rhub, "alice/r-paper", steps=40, recipe="paper")
    assert paper.request["config"]["features"] != "embedding" and paper.request["config"]["lexical_dim"] == 0
    assert paper.request["train"] == {}
    _, mixer = _submit(rhub, "alice/r-mixer", preset="lora_mixer", steps=40, params={"k": 2}, train={"lr": 0.01})
    assert mixer.request["config"]["task_ce"] == 1.0 and mixer.request["config"]["placement"] == "all_linear"
    assert mixer.request["config"]["k"] == 2 and mixer.request["train"]["lr"] == 0.01  # given values win
    with pytest.raises(InvalidInputError, match="recipe must be one of hub, paper") as err:
        RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS), name="alice/x", recipe="best")
    assert err.value.details["field"] == "recipe"


def test_a_router_trained_with_the_defaults_routes_each_expert_its_own_prompts(rhub, api):
    client, headers = api
    r = client.post("/api/v1/routers", headers=headers,
                    json={"preset": "meteora", "experts": EXPERTS, "name": "alice/router", "steps": 60})
    assert r.status_code == 202, r.text
    assert r.json()["request"]["config"]["features"] == "embedding"
    assert client.post("/api/v1/routers", headers=headers, json={
        "preset": "meteora", "experts": EXPERTS, "name": "alice/r2", "recipe": "nope"}).status_code == 422
    w = Worker(rhub.queue, rhub.handlers, "test")
    while w.run_once():
        pass
    job = client.get(f"/api/v1/jobs/{r.json()['id']}", headers=headers).json()
    assert job["status"] == "succeeded", job["error"]
    picked = {}
    for prompt, expert in (("up: kite", "alice/upper@1"), ("#21 22", "bob/digits@1")):
        out = client.post("/v1/completions", headers=headers,
                          json={"model": "alice/router", "prompt": prompt + "\n", "max_tokens": 2}).json()
        weights = out["loom"]["adapters"]  # which experts answered, with what weight
        picked[expert] = max(weights, key=weights.get)
    assert picked == {"alice/upper@1": "alice/upper@1", "bob/digits@1": "bob/digits@1"}, picked
