"""One background re-embedding pass per hub: a lease in the database (SQLite and PostgreSQL), other processes
follow the vectors it stores through their incremental sync, and a crashed or stalled holder is taken over."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import select, update

from hub.db.models import Adapter, Lease, utcnow
from hub.services.leases import DbLease
from hub.services.search_reembed import LEASE_NAME
from tests.services.test_search import _fill, _gate_reembedding, _make_old_recipe, _rows, names


def _old_recipe_hub(make_hub, adapter_dirs):
    """A hub whose three public adapters of alice hold recipe-1 vectors of the configured model; closed."""
    hub = make_hub()
    _fill(hub, adapter_dirs)
    model = hub.settings.embedding_model
    _make_old_recipe(hub, {"alice/upper": model, "alice/sql": model, "alice/summarize": model})
    hub.close()
    return model


def _count_embeds(service):
    """Record the adapter texts ``service`` embeds (its queries have their own encoder)."""
    seen: list[str] = []
    real = service.embed

    def counting(texts):
        seen.extend(texts)
        return real(texts)

    service.embed = counting
    return seen


def _expire(hub, holder="crashed-host:4242:dead"):
    with hub.sessions.begin() as s:
        s.execute(update(Lease).where(Lease.name == LEASE_NAME).values(holder=holder,
                                                                        expires_at=utcnow() - timedelta(seconds=1)))


def test_a_lease_is_held_by_one_holder_until_released_or_expired(hub):
    a = DbLease(hub.sessions, "job", ttl_s=60, holder="a")
    b = DbLease(hub.sessions, "job", ttl_s=60, holder="b")
    assert a.acquire() and a.acquire()  # free, then already ours
    assert not b.acquire() and a.renew() and not b.renew()
    b.release()  # not b's: a keeps it
    assert a.current()[0] == "a"
    with hub.sessions.begin() as s:  # a crashed: its lease runs out
        s.execute(update(Lease).values(expires_at=utcnow() - timedelta(seconds=1)))
    assert b.acquire() and not a.renew() and a.current()[0] == "b"
    b.release()
    assert a.current() is None and a.acquire()
    with pytest.raises(ValueError, match="ttl_s must be > 0"):
        DbLease(hub.sessions, "job", ttl_s=0)


def test_of_many_processes_racing_for_a_free_lease_one_gets_it(hub):
    leases = [DbLease(hub.sessions, "race", ttl_s=60, holder=f"p{i}") for i in range(6)]
    start, got = threading.Barrier(len(leases)), []

    def take(lease):
        start.wait()
        if lease.acquire():
            got.append(lease.holder)

    threads = [threading.Thread(target=take, args=(lease,)) for lease in leases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert len(got) == 1 and leases[0].current()[0] == got[0]


def test_one_process_re_embeds_and_another_follows_its_vectors_without_a_restart(make_hub, adapter_dirs, monkeypatch):
    """Two processes start on a hub with old-recipe vectors: one holds the lease and re-embeds; the other embeds
    nothing, and its periodic sync loads the new vectors (the rows' ``updated_at`` is left as it was)."""
    import hub.services.search_index as search_module

    monkeypatch.setattr(search_module, "REFRESH_INTERVAL_S", 0.0)
    _old_recipe_hub(make_hub, adapter_dirs)
    first, second = make_hub(), make_hub()
    entered, gate = _gate_reembedding(first.search)
    follower = _count_embeds(second.search)
    second.search.reembedder.poll_s = 0.05
    first.search.ensure_index()
    assert entered.wait(30)  # first holds the lease and its first batch
    second.search.ensure_index()
    assert names(second.search.search(None, "make my text all capital letters", k=1)) == ["alice/upper"]
    time.sleep(0.3)  # several of second's tries at the lease
    assert second.search.reembedder.running and follower == []
    before = _rows(first)
    read: list[object] = []
    since = search_module.repo.embedding_hashes_since
    monkeypatch.setattr(search_module.repo, "embedding_hashes_since", lambda *a: read.append(a) or since(*a))
    gate.set()
    assert first.search.reembedder.wait(60) and first.search.reembedder.done == 3
    assert second.search.reembedder.wait(30)  # took the freed lease, found nothing left
    assert second.search.reembedder.done == 0 and follower == []
    assert first.search.reembedder.lease.current() is None  # released
    rows = _rows(first)
    assert {n: rows[n].updated_at for n in rows} == {n: before[n].updated_at for n in before}
    assert names(second.search.search(None, "generate database queries from natural language", k=1)) == ["alice/sql"]
    assert read and not second.search.refresh(force=True)  # the incremental sync already had every vector
    for full in ("alice/upper", "alice/sql", "alice/summarize"):
        a = rows[full]
        np.testing.assert_allclose(second.search._index.vectors([a.id])[0],
                                   np.frombuffer(a.embedding, dtype=np.float32), atol=1e-6)
        assert a.embedding != before[full].embedding


def test_a_crashed_holder_blocks_until_its_lease_expires(make_hub, adapter_dirs):
    """A lease left by a process that died (not expired yet) keeps the pass waiting; once expired, it runs."""
    _old_recipe_hub(make_hub, adapter_dirs)
    hub = make_hub()
    assert DbLease(hub.sessions, LEASE_NAME, ttl_s=600, holder="crashed-host:4242:dead").acquire()
    seen = _count_embeds(hub.search)
    hub.search.reembedder.poll_s = 0.05
    hub.search.ensure_index()
    time.sleep(0.3)
    assert hub.search.reembedder.running and seen == [] and hub.search.reembedder.done == 0
    _expire(hub)
    assert hub.search.reembedder.wait(60) and hub.search.reembedder.done == 3 and len(seen) == 3
    assert {a.embedding_model for a in _rows(hub).values()} == {hub.search.embedding_key}


def test_a_holder_that_lost_its_lease_stops_and_waits(make_hub, adapter_dirs):
    """A holder stalled past its lease's expiry, whose lease another process took meanwhile, stops after the batch
    in hand instead of re-embedding beside the new holder."""
    _old_recipe_hub(make_hub, adapter_dirs)
    hub = make_hub()
    entered, gate = _gate_reembedding(hub.search)
    r = hub.search.reembedder
    r.lease.ttl_s, r.poll_s = 0.001, 0.05  # renewed after every batch
    hub.search.ensure_index()
    assert entered.wait(30)
    with hub.sessions.begin() as s:  # it stalled; another process took the expired lease
        s.execute(update(Lease).values(holder="other:1:x", expires_at=utcnow() + timedelta(seconds=600)))
    gate.set()
    deadline = time.monotonic() + 30
    while r.done < 1 and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    assert r.done == 1 and r.running  # the batch in hand was stored; it waits for the lease now
    with hub.sessions() as s:
        models = list(s.scalars(select(Adapter.embedding_model).order_by(Adapter.id)))
    assert models.count(hub.search.embedding_key) == 2  # bob/french (current) + the batch in hand
    assert r.stop(30)
