"""``POST /api/v1/routers`` (202 job, 4xx at submit), ``GET /api/v1/routers/presets``, and ``loom router``."""

from __future__ import annotations

import json
import threading

import pytest

from tests.router_training.conftest import EXPERTS, make_app


def test_post_routers_queues_a_job_and_bad_input_is_4xx(api):
    c, auth = api
    body = {"preset": "meteora", "experts": EXPERTS, "name": "alice/mix", "steps": 3, "params": {"k": 2}}
    r = c.post("/api/v1/routers", json=body, headers=auth)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["kind"] == "router_train" and job["status"] == "queued" and not job["deduplicated"]
    assert job["request"]["expert_ids"] == EXPERTS and job["request"]["config"]["k"] == 2
    again = c.post("/api/v1/routers", json=body, headers=auth).json()
    assert again["id"] == job["id"] and again["deduplicated"]
    assert c.get(f"/api/v1/jobs/{job['id']}", headers=auth).json()["status"] == "queued"

    bad = c.post("/api/v1/routers", json={**body, "preset": "nope"}, headers=auth)
    assert bad.status_code == 422 and "meteora" in bad.json()["error"]["message"]
    bad = c.post("/api/v1/routers", json={**body, "experts": ["alice/upper", "carol/nosamples"]}, headers=auth)
    assert bad.status_code == 422 and bad.json()["error"]["details"]["lacking"] == ["carol/nosamples@1"]
    assert c.post("/api/v1/routers", json={**body, "experts": ["alice/upper", "nobody/x"]}, headers=auth).status_code == 404
    one = c.post("/api/v1/routers", json={**body, "experts": ["alice/upper"]}, headers=auth)
    assert one.status_code == 422 and "at least 2 different experts" in one.text
    assert c.post("/api/v1/routers", json={**body, "params": {"k": "two"}}, headers=auth).status_code == 422
    assert c.post("/api/v1/routers", json=body).status_code == 401  # writes need a token
    assert [j["id"] for j in c.get("/api/v1/jobs", headers=auth).json()] == [job["id"]]


def test_presets_endpoint_lists_the_registry(api):
    from routing import ROUTERS

    c, _ = api
    items = c.get("/api/v1/routers/presets").json()
    assert [p["name"] for p in items] == ROUTERS.names()
    meteora = next(p for p in items if p["name"] == "meteora")
    assert meteora["trainable"] and "k" in meteora["config"] and meteora["paper"].startswith("http")
    assert not next(p for p in items if p["name"] == "semantic")["trainable"]


@pytest.fixture
def server(rhub):
    """A real uvicorn server with the router routes; yields (url, alice's token)."""
    from tests.helpers import serve_in_thread

    _, token = rhub.users.create_token("alice")
    with serve_in_thread(make_app(rhub)) as url:
        yield url, token


def test_cli_router_train_waits_with_progress_then_presets(server, rhub, capsys):
    from hub import cli
    from hub.jobs.worker import Worker

    url, token = server
    stop = threading.Event()
    t = threading.Thread(target=Worker(rhub.queue, rhub.handlers, "cli-test").run_forever, kwargs={"poll": 0.1, "should_stop": stop.is_set},
                         daemon=True)
    t.start()
    try:
        rc = cli.main(["--server", url, "--token", token, "router", "train", "--preset", "meteora",
                       "--expert", EXPERTS[0], "--expert", "bob/digits", "--name", "alice/cli-router",
                       "--steps", "4", "--param", "k=2", "--train", "batch_size=4", "--wait"])
    finally:
        stop.set()
        t.join(30)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "published alice/cli-router@1 (meteora over 2 experts" in out.out
    assert "published alice/cli-router@1" in out.err  # the job's live log was followed
    assert rhub.adapters.get(None, "alice", "cli-router").kind == "router"

    assert cli.main(["--server", url, "router", "presets", "--json"]) == 0
    names = [p["name"] for p in json.loads(capsys.readouterr().out)]
    assert "meteora" in names and "semantic" in names
    rc = cli.main(["--server", url, "--token", token, "router", "train", "--preset", "nope", "--expert", EXPERTS[0],
                   "--expert", EXPERTS[1], "--name", "alice/x"])
    assert rc == 1 and "unknown router preset 'nope'" in capsys.readouterr().err
    rc = cli.main(["--server", url, "--token", token, "router", "train", "--preset", "meteora", "--expert",
                   EXPERTS[0], "--name", "alice/x"])
    assert rc == 1 and "at least 2 different experts" in capsys.readouterr().err
