"""The /api/v1/hf routes through FastAPI's TestClient, on SQLite and PostgreSQL, against the fake Hub."""

from __future__ import annotations

from hub.jobs.worker import Worker
from tests.hf.conftest import WEBHOOK_SECRET, card
from tests.hf.test_export_webhook import payload
from tests.hf.util import counts, leftovers, seed

REPO = "alice/pico-french"
IMPORT = "/api/v1/hf/import"


def test_import_then_same_commit_again(hf_api, hf_hub, fake_hub, lora_dirs):
    sha = seed(fake_hub, REPO, lora_dirs["one"], "Answers in French.", license="mit")
    r = hf_api.post(IMPORT, json={"repo": REPO}, headers=hf_api.alice)
    assert r.status_code == 201, r.text
    body = r.json()
    assert (body["imported"], body["skipped"], body["failed"]) == (1, 0, 0)
    item = body["items"][0]
    assert item["sha"] == sha and item["adapter"]["id"] == "alice/pico-french"
    assert item["version"]["source"] == f"hf:{REPO}@{sha}" and item["adapter"]["license"] == "mit"
    r = hf_api.post(IMPORT, json={"repo": REPO, "revision": sha}, headers=hf_api.alice)
    assert r.status_code == 200 and r.json()["items"][0]["status"] == "skipped"
    r = hf_api.get("/api/v1/adapters/alice/pico-french/versions")
    assert [v["source"] for v in r.json()["items"]] == [f"hf:{REPO}@{sha}"]
    r = hf_api.post(IMPORT, json={"repo": REPO, "name": "alice/french", "visibility": "private"}, headers=hf_api.bob)
    assert r.status_code == 403 and "namespace alice" in r.json()["error"]["message"]  # not bob's namespace
    r = hf_api.post(IMPORT, json={"repo": REPO, "name": "bob/french", "visibility": "private"}, headers=hf_api.bob)
    assert r.status_code == 201 and r.json()["items"][0]["adapter"]["owner"] == "bob"  # bob's own copy


def test_import_input_and_auth_errors(hf_api):
    assert hf_api.post(IMPORT, json={"repo": REPO}).status_code == 401
    for bad in ({}, {"repo": REPO, "search": "x"}, {"repo": "not a repo"}, {"repo": REPO + "@main", "revision": "v1"},
                {"repo": REPO, "name": "Bad Name"}, {"author": "alice", "name": "alice/x"}, {"author": "a", "limit": 0}):
        r = hf_api.post(IMPORT, json=bad, headers=hf_api.alice)
        assert r.status_code == 422, (bad, r.text)
        assert r.json()["error"]["code"] == "invalid_input"


def test_upstream_errors_are_clear_and_register_nothing(hf_api, hf_hub, fake_hub, lora_dirs):
    cases = {"alice/nothing-here": (404, "not_found", "not found")}
    seed(fake_hub, "bob/gated", lora_dirs["one"], gated="manual")
    cases["bob/gated"] = (403, "forbidden", "gated")
    fake_hub.create_repo("alice/full-model")
    fake_hub.commit("alice/full-model", {"config.json": "{}", "README.md": card("a full model")})
    cases["alice/full-model"] = (422, "invalid_adapter", "not a LoRA repository")
    seed(fake_hub, REPO, lora_dirs["one"])
    cases[REPO + "@v9"] = (404, "not_found", "revision 'v9' not found")
    for repo, (status, code, text) in cases.items():
        r = hf_api.post(IMPORT, json={"repo": repo}, headers=hf_api.alice)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert text in r.json()["error"]["message"]
    fake_hub.drop_downloads(times=6, after_bytes=100, path_contains="adapter_model.safetensors")
    r = hf_api.post(IMPORT, json={"repo": REPO}, headers=hf_api.alice)
    assert r.status_code == 502 and "network failure while downloading" in r.json()["error"]["message"]
    fake_hub.rate_limit(times=10, retry_after=120, path_contains="/api/models/")
    r = hf_api.post(IMPORT, json={"repo": REPO}, headers=hf_api.alice)
    assert r.json()["error"]["code"] == "upstream_error" and r.json()["error"]["details"]["retry_after"] == 120
    # 502 today; 503 + Retry-After once hub/api/errors.py maps upstream errors that carry retry_after
    assert r.status_code == 502 or (r.status_code == 503 and r.headers["retry-after"] == "120")
    assert counts(hf_hub) == {"adapters": 0, "adapter_versions": 0, "hf_imports": 0, "hf_exports": 0}
    assert leftovers(hf_hub) == [] and hf_api.get("/api/v1/adapters").json()["total"] == 0


def test_search_bulk_import_and_sync(hf_api, hf_hub, fake_hub, lora_dirs):
    seed(fake_hub, "alice/pico-a", lora_dirs["one"])
    seed(fake_hub, "alice/pico-b", lora_dirs["two"])
    hits = hf_api.get("/api/v1/hf/search", params={"author": "alice"}, headers=hf_api.alice).json()
    assert sorted(h["repo_id"] for h in hits) == ["alice/pico-a", "alice/pico-b"] and all(h["sha"] for h in hits)
    r = hf_api.post(IMPORT, json={"author": "alice", "limit": 10}, headers=hf_api.alice)
    assert r.status_code == 201 and r.json()["imported"] == 2
    r = hf_api.post(IMPORT, json={"author": "alice"}, headers=hf_api.alice)
    assert r.status_code == 200 and r.json()["skipped"] == 2

    new = seed(fake_hub, "alice/pico-a", lora_dirs["three"])
    r = hf_api.post("/api/v1/hf/sync", json={}, headers=hf_api.bob)  # bob tracks nothing
    assert r.status_code == 200 and r.json() == {"updated": [], "unchanged": [], "errors": {}}
    r = hf_api.post("/api/v1/hf/sync", json={}, headers=hf_api.alice)
    assert r.status_code == 200
    assert r.json()["updated"] == [{"name": "alice/pico-a", "version": 2, "repo_id": "alice/pico-a", "sha": new,
                                    "created": True}]
    assert sorted(r.json()["unchanged"]) == ["alice/pico-b"]
    assert hf_api.post("/api/v1/hf/sync", headers=hf_api.alice).json()["updated"] == []
    assert counts(hf_hub)["adapter_versions"] == 3
    # a repo nothing of the caller's was imported from: a 404 naming it, and nothing is synced
    seed(fake_hub, "alice/pico-a", lora_dirs["two"])
    for who, repos in ((hf_api.alice, ["alice/pico-a", "alice/never"]), (hf_api.bob, ["alice/pico-a"])):
        r = hf_api.post("/api/v1/hf/sync", json={"repos": repos}, headers=who)
        assert r.status_code == 404 and r.json()["error"]["code"] == "not_found", r.text
        assert r.json()["error"]["message"].startswith(f"{repos[-1]} was never imported by "), r.text
    assert counts(hf_hub)["adapter_versions"] == 3


def test_export_route(hf_api, hf_hub, fake_hub, lora_dirs):
    seed(fake_hub, REPO, lora_dirs["one"])
    hf_api.post(IMPORT, json={"repo": REPO, "name": "alice/french"}, headers=hf_api.alice)
    r = hf_api.post("/api/v1/hf/export", json={"name": "alice/french@1", "repo": "alice/french-copy",
                                               "private": True}, headers=hf_api.alice)
    assert r.status_code == 201, r.text
    assert r.json()["commit_sha"] == fake_hub.repo("alice/french-copy").head().oid
    assert fake_hub.repo("alice/french-copy").private
    r = hf_api.post("/api/v1/hf/export", json={"name": "alice/french", "repo": "bob/x"}, headers=hf_api.bob)
    assert r.status_code == 403 and counts(hf_hub)["hf_exports"] == 1
    r = hf_api.post("/api/v1/hf/export", json={"name": "alice/nope", "repo": "alice/x"}, headers=hf_api.alice)
    assert r.status_code == 404


def test_webhook_route(hf_api, hf_hub, fake_hub, lora_dirs):
    seed(fake_hub, REPO, lora_dirs["one"])
    hf_api.post(IMPORT, json={"repo": REPO}, headers=hf_api.alice)
    new = seed(fake_hub, REPO, lora_dirs["two"])
    url = "/api/v1/hf/webhook"
    r = hf_api.post(url, content=payload(REPO, new), headers={"X-Webhook-Secret": "nope"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
    r = hf_api.post(url, content=b"{not json", headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    assert r.status_code == 422
    r = hf_api.post(url, content=payload("bob/other", new), headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    assert r.status_code == 200 and r.json()["status"] == "ignored"
    r = hf_api.post(url, content=payload(REPO, new), headers={"X-Webhook-Secret": WEBHOOK_SECRET})
    assert r.status_code == 202 and r.json()["status"] == "queued"
    job_id = r.json()["job_id"]
    assert Worker(hf_hub.queue, hf_hub.handlers).run_once()
    job = hf_api.get(f"/api/v1/jobs/{job_id}", headers=hf_api.alice).json()
    assert job["status"] == "succeeded" and job["kind"] == "hf_sync"
    r = hf_api.get("/api/v1/adapters/alice/pico-french/versions")
    assert [v["source"] for v in r.json()["items"]][-1] == f"hf:{REPO}@{new}"


def test_operation_ids_are_unique(hf_api):
    ops = [op["operationId"] for path in hf_api.app.openapi()["paths"].values() for op in path.values()]
    assert len(ops) == len(set(ops)) and {"hf_import", "hf_export", "hf_webhook", "hf_sync", "hf_search"} <= set(ops)
