"""The workers table (#19.4) on SQLite and PostgreSQL: a dead worker's running jobs go back to the queue and the
attempt limit holds; a worker whose heartbeat went stale is declared dead by the sweep; ``/healthz`` says
degraded while a registered worker is down."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from sqlalchemy import update

from hub.db.jobs import WorkerRecord
from hub.jobs.queue import MAX_ATTEMPTS


def test_a_dead_workers_jobs_are_requeued_until_the_attempt_limit(hub):
    owner = hub.users.ensure_user("alice")
    job, _ = hub.queue.submit("compose", owner.id, {"x": 1})
    for attempt in range(1, MAX_ATTEMPTS + 1):
        name = f"host:{100 + attempt}"
        hub.workers.register(name, "all", "host", 100 + attempt)
        claimed = hub.queue.claim(name)
        assert claimed is not None and claimed.id == job.id and claimed.attempts == attempt
        assert hub.workers.died(name) == 1
        assert hub.workers.get(name).status == "dead"
        after = hub.queue.get(job.id, owner.id)
        if attempt < MAX_ATTEMPTS:
            assert after.status == "queued" and after.worker is None
            assert after.log[-1].endswith(f"re-queued: its worker {name} stopped (attempt {attempt} of {MAX_ATTEMPTS})")
        else:
            assert after.status == "failed" and after.error["code"] == "worker_lost"
    assert hub.queue.claim("host:999") is None


def test_the_sweep_declares_a_silent_worker_dead_and_healthz_degrades(hub):
    from fastapi.testclient import TestClient

    from hub.api import create_app

    owner = hub.users.ensure_user("alice")
    job, _ = hub.queue.submit("compose", owner.id, {"x": 2})
    hub.workers.register("far:1", "all", "far", 1)
    hub.workers.register("far:2", "short", "far", 2)
    hub.queue.claim("far:1")
    with TestClient(create_app(hub=hub)) as c:
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and h["workers"]["up"] == 2
        with hub.sessions.begin() as s:  # far:1 stops heart-beating (its host went away)
            s.execute(update(WorkerRecord).where(WorkerRecord.name == "far:1")
                      .values(heartbeat_at=datetime.now(UTC) - timedelta(minutes=5)))
        h = c.get("/healthz").json()
        assert h["status"] == "degraded" and h["workers"]["down_workers"] == ["far:1"]
        assert 'loom_workers{lane="all",state="down"} 1.0' in c.get("/metrics").text
        hub.workers.beat("far:2")
        assert hub.workers.sweep() == 1
        assert hub.queue.get(job.id, owner.id).status == "queued"
        h = c.get("/healthz").json()
        assert h["status"] == "ok" and h["workers"] == {"up": 1, "down": 0}
    hub.workers.stopped("far:2")
    assert hub.workers.list() == []
