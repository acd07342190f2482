"""Worker lanes (#18.4): a merge does not wait behind a long training, a queued job says where it stands in line
and what runs ahead of it, and a job's progress never goes back."""

from __future__ import annotations

import threading
import time

import pytest

from hub.jobs.worker import Worker
from hub.services.compositions import CompositionRequest
from hub.services.container import SHORT_KINDS, lane_handlers
from hub.services.router_training import RouterTrainRequest
from tests.router_training.conftest import EXPERTS


def _long_training(hub, alice, name="alice/slow"):
    return hub.routers.submit(alice, RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS), name=name,
                                                        steps=20_000, params={"k": 1}))[0]


def _merge(hub, alice, name="alice/merged", weights=(1.0, 1.0)):
    return hub.compositions.submit(alice, CompositionRequest(sources=tuple(EXPERTS), weights=weights, method="cat",
                                                             name=name))[0]


def _wait(pred, timeout=120.0):
    deadline = time.monotonic() + timeout
    while not pred():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_a_merge_runs_in_the_short_lane_while_a_long_training_holds_the_general_worker(rhub):
    alice = rhub.users.ensure_user("alice")
    assert "compose" in SHORT_KINDS and "router_train" not in SHORT_KINDS
    stop = threading.Event()
    workers = [Worker(rhub.queue, lane_handlers(rhub.handlers, lane), f"w-{lane}") for lane in ("all", "short")]
    assert set(workers[1].handlers) == set(SHORT_KINDS) & set(rhub.handlers)
    threads = [threading.Thread(target=w.run_forever, kwargs={"poll": 0.1, "should_stop": stop.is_set},
                                daemon=True) for w in workers]
    long_job = _long_training(rhub, alice)
    threads[0].start()
    try:
        _wait(lambda: rhub.jobs.get(long_job.id, alice.id).status == "running")
        merge = _merge(rhub, alice)
        queued = rhub.jobs.get(merge.id, alice.id)
        # with the general worker busy and no short worker yet, the merge waits: first in the short line
        assert queued.status == "queued" and queued.position == 1
        threads[1].start()
        _wait(lambda: rhub.jobs.get(merge.id, alice.id).finished, 60)
        assert rhub.jobs.get(merge.id, alice.id).status == "succeeded"
        training = rhub.jobs.get(long_job.id, alice.id)
        assert training.status == "running" and training.worker == "w-all"  # still training
    finally:
        rhub.jobs.cancel(long_job.id, alice.id)
        stop.set()
        for t in threads:
            if t.is_alive():
                t.join(60)
    assert rhub.jobs.get(long_job.id, alice.id).status == "cancelled"


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_a_queued_job_shows_its_place_in_line_and_what_runs_ahead(rhub, api):
    client, headers = api
    alice = rhub.users.ensure_user("alice")
    bob = rhub.users.ensure_user("bob")
    first = _long_training(rhub, alice)
    running = rhub.queue.claim("w1", ("router_train",))
    assert running is not None and running.id == first.id
    rhub.queue.report(first.id, progress=0.41)
    second = _long_training(rhub, alice, "alice/slow2")
    m1, m2 = _merge(rhub, alice), _merge(rhub, alice, "alice/merged2", (1.0, 0.5))
    body = client.get(f"/api/v1/jobs/{second.id[:12]}", headers=headers).json()
    assert body["position"] == 1
    assert body["ahead"] == [{"id": first.id, "kind": "router_train", "status": "running", "progress": 0.41}]
    # a merge waits only for the merges before it (the short lane)
    assert client.get(f"/api/v1/jobs/{m1.id}", headers=headers).json()["position"] == 1
    body = client.get(f"/api/v1/jobs/{m2.id}", headers=headers).json()
    assert body["position"] == 2 and [a["id"] for a in body["ahead"]] == [m1.id]
    # another user's job ahead is shown without its id
    third = _long_training(rhub, bob, "bob/slow")
    rhub.queue.claim("w2", ("router_train",))  # takes alice's second training (the oldest queued)
    _, token = rhub.users.create_token("bob")
    body = client.get(f"/api/v1/jobs/{third.id}", headers={"Authorization": f"Bearer {token}"}).json()
    assert body["position"] == 3 and {a["id"] for a in body["ahead"]} == {None}  # behind the two merges
    assert len(body["ahead"]) == 4  # two trainings running, two merges queued before it
    listed = {j["id"]: j for j in client.get("/api/v1/jobs", headers=headers).json()}
    assert listed[m2.id]["position"] == 2 and listed[first.id]["position"] is None


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_progress_never_goes_back(rhub):
    alice = rhub.users.ensure_user("alice")
    job = _long_training(rhub, alice)
    rhub.queue.claim("w", ("router_train",))
    for p in (0.41, 0.28, 0.45, 0.30):
        rhub.queue.report(job.id, progress=p)
    assert rhub.jobs.get(job.id, alice.id).progress == pytest.approx(0.45)

