"""Semantic search through the service layer: paraphrases, filters without shortfall, visibility, index life."""

from __future__ import annotations

import pytest

from hub.repositories.adapters import AdapterFilters
from tests.services.util import files_of

CATALOG = [
    ("alice/upper", 0, "Converts lowercase letters in a sentence to uppercase capitals.", ["text"], "public", "mit"),
    ("alice/sql", 1, "Translates English questions into SQL database queries.", ["code"], "public", "apache-2.0"),
    ("alice/summarize", 2, "Summarizes long news articles into a few short sentences.", ["text"], "public", "mit"),
    ("bob/french", 0, "Translates English sentences into French.", ["translation"], "private", "mit"),
]


def _fill(hub, adapter_dirs):
    users = {n: hub.users.ensure_user(n) for n in ("alice", "bob")}
    for name, idx, desc, tags, vis, lic in CATALOG:
        hub.publisher.publish(users[name.split("/")[0]], name, files_of(adapter_dirs[idx]), description=desc,
                             tags=tags, visibility=vis, license=lic)
    return users


def names(hits):
    return [h.adapter.full_name for h in hits]


def test_search_paraphrase_filters_visibility(hub, adapter_dirs):
    users = _fill(hub, adapter_dirs)
    hits = hub.search.search(None, "make my text all capital letters", k=3)
    assert names(hits)[0] == "alice/upper" and len(hits) == 3
    assert hits[0].score > hits[1].score >= hits[2].score
    assert names(hub.search.search(None, "generate database queries from natural language", k=1)) == ["alice/sql"]
    # private: invisible to anonymous users and to others, visible to the owner
    assert "bob/french" not in names(hub.search.search(None, "translate to French", k=10))
    assert "bob/french" not in names(hub.search.search(users["alice"], "translate to French", k=10))
    assert names(hub.search.search(users["bob"], "translate to French", k=1)) == ["bob/french"]
    # filters are applied inside the engine: k results whenever k match
    only_text = hub.search.search(None, "translate English into SQL", k=2, filters=AdapterFilters(tag="text"))
    assert sorted(names(only_text)) == ["alice/summarize", "alice/upper"]
    rank8 = hub.search.search(None, "capital letters", k=5, filters=AdapterFilters(min_rank=8))
    assert names(rank8) == ["alice/summarize"]
    assert names(hub.search.search(None, "anything", k=5, filters=AdapterFilters(license="apache-2.0"))) == ["alice/sql"]
    assert names(hub.search.search(users["bob"], "x", k=5, filters=AdapterFilters(owner="bob"))) == ["bob/french"]
    assert hub.search.search(None, "x", k=5, filters=AdapterFilters(owner="bob")) == []
    # an exact tag or name match ranks first, whatever the similarity
    code = hub.search.search(None, "code", k=3)
    assert names(code)[0] == "alice/sql" and code[0].exact and not code[1].exact
    assert names(hub.search.search(None, "summarize", k=2))[0] == "alice/summarize"


@pytest.mark.parametrize("kind", ["flat", "ivf", "hnsw"])
def test_index_persists_rebuilds_and_follows_patches(make_hub, adapter_dirs, kind):
    opts = {} if kind == "flat" else {"exact_search_threshold": 1, "search_index": kind}
    hub = make_hub(**opts)
    users = _fill(hub, adapter_dirs)
    assert hub.search.ensure_index() == "rebuilt" and hub.search._index.kind == kind
    alice = users["alice"]
    hub.adapters.patch(alice, "alice", "summarize", description="Writes Python unit tests for functions.")
    assert names(hub.search.search(None, "generate pytest tests for my code", k=1)) == ["alice/summarize"]
    hub.adapters.delete(alice, "alice", "sql")
    assert "alice/sql" not in names(hub.search.search(None, "SQL queries", k=5))
    hub.close()  # persists the index
    again = make_hub(**opts)
    assert again.search.ensure_index() == "loaded" and again.search._index.kind == kind
    assert again.search.indexed_count() == 3
    third = make_hub(**opts)
    third.publisher.publish(alice, "alice/new", files_of(adapter_dirs[1]), description="Detects spam e-mails.")
    fourth = make_hub(**opts)  # the persisted index no longer matches the DB
    assert fourth.search.is_stale() and fourth.search.ensure_index() == "rebuilt"
    assert names(fourth.search.search(None, "filter junk email", k=1)) == ["alice/new"]
    progress = []
    assert fourth.search.reindex(progress=lambda d, t: progress.append((d, t))) == 4
    assert progress[-1] == (4, 4)


def test_search_sees_what_other_processes_publish_change_and_delete(make_hub, adapter_dirs):
    """A job worker or ``loom demo``'s background build publishes from another process: the serving
    process's loaded index follows (each Hub here has its own index, as each process does)."""
    server, worker = make_hub(), make_hub()
    users = _fill(server, adapter_dirs)
    assert names(server.search.search(None, "capital letters", k=1)) == ["alice/upper"]  # index loaded
    alice = users["alice"]
    worker.publisher.publish(alice, "alice/spam", files_of(adapter_dirs[1]), description="Detects spam e-mails.")
    assert server.search.refresh(force=True) == 1
    assert names(server.search.search(None, "filter junk email", k=1)) == ["alice/spam"]
    worker.adapters.patch(alice, "alice", "spam", description="Writes Python unit tests for functions.")
    worker.adapters.delete(alice, "alice", "sql")
    assert server.search.refresh(force=True) == 2
    assert names(server.search.search(None, "generate pytest tests for my code", k=1)) == ["alice/spam"]
    assert "alice/sql" not in names(server.search.search(None, "SQL database queries", k=5))
    assert server.search.refresh(force=True) == 0  # nothing moved: nothing to do


def test_periodic_refresh_reads_only_changed_rows_and_searches_drop_rows_deleted_elsewhere(
    make_hub, adapter_dirs, monkeypatch
):
    """The watermark (max id, updated_at, embedded_at) finds publishes and patches made elsewhere; a deletion does not
    move it, so the search that meets the deleted id drops it and still returns k hits."""
    import hub.services.search_index as search_module

    monkeypatch.setattr(search_module, "REFRESH_INTERVAL_S", 0.0)
    server, worker = make_hub(), make_hub()
    users = _fill(server, adapter_dirs)
    alice = users["alice"]
    assert len(server.search.search(None, "capital letters", k=3)) == 3  # index loaded
    read: list[object] = []
    since = search_module.repo.embedding_hashes_since
    monkeypatch.setattr(search_module.repo, "embedding_hashes_since", lambda *a: read.append(a) or since(*a))
    worker.publisher.publish(alice, "alice/spam", files_of(adapter_dirs[1]), description="Detects spam e-mails.")
    assert names(server.search.search(None, "filter junk email", k=1)) == ["alice/spam"]
    worker.adapters.patch(alice, "alice", "spam", description="Writes Python unit tests for functions.")
    assert names(server.search.search(None, "generate pytest tests for my code", k=1)) == ["alice/spam"]
    assert len(read) == 2  # each change read only the rows stamped since the last watermark
    mit = AdapterFilters(license="mit")
    upper = server.search.search(None, "capital letters", k=3, filters=mit)  # caches the allowed set
    assert names(upper)[0] == "alice/upper"
    worker.adapters.delete(alice, "alice", "upper")
    hits = server.search.search(None, "capital letters", k=3, filters=mit)
    assert names(hits) == names(worker.search.search(None, "capital letters", k=3, filters=mit))
    assert "alice/upper" not in names(hits) and len(hits) == len(upper) - 1
    assert upper[0].adapter.id not in server.search._index and len(read) == 2


def _make_old_recipe(hub, old):
    """Store recipe-1 vectors ("name: description Tags: a, b.") with the ``embedding_model`` given per adapter."""
    from sqlalchemy import select, update

    from hub.db.models import Adapter
    from hub.services.search_text import vector_hash

    with hub.sessions.begin() as s:
        for full, stored in old.items():
            ns, nm = full.split("/")
            a = s.scalars(select(Adapter).where(Adapter.namespace == ns, Adapter.name == nm)).one()
            blob = hub.search.embed([f"{nm}: {a.description} Tags: {', '.join(a.tags)}."])[0].tobytes()  # recipe 1
            s.execute(update(Adapter).where(Adapter.id == a.id).values(embedding=blob, embedding_model=stored,
                                                                       embedding_hash=vector_hash(blob)))


def _gate_reembedding(service):
    """Make the service's adapter embedding (the background pass; queries have their own encoder) wait for a gate,
    one adapter per batch. Returns (entered, gate) events."""
    import threading

    entered, gate = threading.Event(), threading.Event()
    real = service.embed

    def gated(texts):
        entered.set()
        assert gate.wait(60)
        return real(texts)

    service.embed = gated
    service.reembedder.batch = 1
    return entered, gate


def _rows(hub):
    from sqlalchemy import select

    from hub.db.models import Adapter

    with hub.sessions() as s:
        return {a.full_name: a for a in s.scalars(select(Adapter))}


def test_a_hub_embedded_by_an_older_text_recipe_searches_at_once_and_re_embeds_in_the_background(
    make_hub, adapter_dirs, caplog
):
    """Vectors stored before the embedding text changed (``embedding_model`` without the recipe version, or
    an older one) are indexed as they are at start, so searches answer at once; a background thread redoes them
    from the current text and puts them into the live index. Another model's are left alone."""
    import logging

    import numpy as np

    from hub.services.search import EMBEDDING_TEXT_VERSION, embedding_key, embedding_text

    hub = make_hub()
    _fill(hub, adapter_dirs)
    model = hub.settings.embedding_model
    old = {"alice/upper": model, "alice/sql": f"{model}+text{EMBEDDING_TEXT_VERSION - 1}", "alice/summarize": "other"}
    _make_old_recipe(hub, old)
    hub.close()
    again = make_hub()
    entered, gate = _gate_reembedding(again.search)
    caplog.set_level(logging.INFO, logger="hub.services")
    assert again.search.ensure_index() == "rebuilt"
    assert entered.wait(30)  # the background pass holds its first batch
    # searches answer meanwhile, from the stored old-recipe vectors
    assert names(again.search.search(None, "make my text all capital letters", k=1)) == ["alice/upper"]
    assert names(again.search.search(None, "generate database queries from natural language", k=1)) == ["alice/sql"]
    before = _rows(again)
    assert before["alice/upper"].embedding_model == model and again.search.indexed_count() == 3  # not "other"
    index = again.search._index
    for full in ("alice/upper", "alice/sql"):
        a = before[full]
        np.testing.assert_allclose(index.vectors([a.id])[0], np.frombuffer(a.embedding, dtype=np.float32), atol=1e-6)
    gate.set()
    assert again.search.reembedder.wait(60)
    assert again.search.reembedder.done == 2
    rows = _rows(again)
    index = again.search._index
    for full in ("alice/upper", "alice/sql", "bob/french"):
        a = rows[full]
        assert a.embedding_model == embedding_key(model)
        want = again.search.embed([embedding_text(a.namespace, a.name, a.description, a.tags)])[0]
        np.testing.assert_allclose(np.frombuffer(a.embedding, dtype=np.float32), want, atol=1e-6)
        np.testing.assert_allclose(index.vectors([a.id])[0], want, atol=1e-6)  # the live index has the new one
    assert rows["alice/summarize"].embedding_model == "other"  # another model: left to reindex / fsck
    assert rows["alice/summarize"].id not in index
    assert again.search.reembed_old_recipe() == 0
    assert any("re-embedded 2 adapter(s)" in r.getMessage() for r in caplog.records)
    assert not again.search.is_stale()  # the pass persisted the index with the new vectors
    assert names(again.search.search(None, "make my text all capital letters", k=1)) == ["alice/upper"]


def test_background_re_embedding_stops_at_shutdown_and_resumes_at_the_next_start(make_hub, adapter_dirs):
    """Shutdown ends the pass after the batch in hand; what it stored stays, the next start does the rest; a patch
    made meanwhile is not overwritten by the pass."""
    import threading

    import numpy as np

    from hub.services.search import embedding_key, embedding_text

    hub = make_hub()
    users = _fill(hub, adapter_dirs)
    model = hub.settings.embedding_model
    _make_old_recipe(hub, {"alice/upper": model, "alice/sql": model, "alice/summarize": model})
    hub.close()
    first = make_hub()
    entered, gate = _gate_reembedding(first.search)
    first.search.ensure_index()
    assert entered.wait(30)  # holding alice/upper (the lowest id)
    closing = threading.Thread(target=first.close)
    closing.start()
    gate.set()
    closing.join(60)
    assert not closing.is_alive() and not first.search.reembedder.running
    key = embedding_key(model)
    rows = _rows(first)
    assert rows["alice/upper"].embedding_model == key  # the batch in hand was stored
    assert rows["alice/sql"].embedding_model == model and rows["alice/summarize"].embedding_model == model
    first.adapters.patch(users["alice"], "alice", "sql", description="Writes Python unit tests for functions.")
    second = make_hub()
    assert second.search.ensure_index() == "rebuilt"  # the DB moved since the saved index
    assert second.search.reembedder.wait(60) and second.search.reembedder.done == 1  # summarize; sql was patched
    rows = _rows(second)
    assert {rows[n].embedding_model for n in ("alice/upper", "alice/sql", "alice/summarize")} == {key}
    a = rows["alice/sql"]
    want = second.search.embed([embedding_text(a.namespace, a.name, "Writes Python unit tests for functions.",
                                               a.tags)])[0]
    np.testing.assert_allclose(second.search._index.vectors([a.id])[0], want, atol=1e-6)
    assert names(second.search.search(None, "generate pytest tests for my code", k=1)) == ["alice/sql"]


def test_a_search_and_a_change_do_not_wait_for_a_save(make_hub, adapter_dirs, monkeypatch):
    """A save copies the index under the locks and writes the file outside them: while a (slowed) write is in
    progress a search answers and a patch goes into the index; the file written is the copy, whole, with the
    fingerprint of what it holds, so the next save (or start) brings the patch."""
    import threading

    import hub.search.index_io as index_module
    from hub.search.index import VectorIndex
    from hub.services.search import fingerprint

    hub = make_hub()
    users = _fill(hub, adapter_dirs)
    hub.search.ensure_index()
    writing, release = threading.Event(), threading.Event()
    real = index_module.save_arrays

    def slow(directory, arrays):
        writing.set()
        assert release.wait(60)
        return real(directory, arrays)

    monkeypatch.setattr(index_module, "save_arrays", slow)
    alice = users["alice"]
    hub.adapters.patch(alice, "alice", "upper", description="Makes every letter of a text uppercase.")
    held = dict(hub.search._hashes)
    saver = threading.Thread(target=hub.search.save)
    saver.start()
    assert writing.wait(30)
    done: dict[str, object] = {}

    def search_and_patch():
        done["hits"] = names(hub.search.search(None, "translate English questions into SQL", k=1))
        hub.adapters.patch(alice, "alice", "summarize", description="Writes Python unit tests for functions.")
        done["after"] = names(hub.search.search(None, "generate pytest tests for my code", k=1))

    other = threading.Thread(target=search_and_patch)
    other.start()
    other.join(30)
    assert not other.is_alive(), "a search or a change waited for the save's file write"
    assert done == {"hits": ["alice/sql"], "after": ["alice/summarize"]} and saver.is_alive()
    release.set()
    saver.join(30)
    on_disk, fp = VectorIndex.load(hub.settings.index_dir)  # the copy made before the second patch, whole
    assert fp == fingerprint(hub.settings.embedding_model, held.items()) and sorted(on_disk.ids()) == sorted(held)
    assert hub.search.is_stale()  # it does not hold the second patch: a start would not trust it
    hub.search.save()
    assert not hub.search.is_stale()


def test_a_save_that_rebuilds_the_index_keeps_changes_made_meanwhile(make_hub, adapter_dirs, monkeypatch):
    """An index with many tombstones is rebuilt when saved, outside the service lock: a patch and a delete made
    during the rebuild are replayed into the new index."""
    import threading

    import numpy as np

    from hub.search.index import VectorIndex
    from hub.services.search import embedding_text

    hub = make_hub(exact_search_threshold=1, search_index="hnsw")
    users = _fill(hub, adapter_dirs)
    alice = users["alice"]
    hub.search.ensure_index()
    hub.adapters.patch(alice, "alice", "upper", description="Makes every letter of a text uppercase.")
    hub.adapters.patch(alice, "alice", "sql", description="Writes SQL from English questions.")
    old = hub.search._index
    assert old.needs_rebuild
    building, release = threading.Event(), threading.Event()
    real = VectorIndex.rebuild

    def slow(self):  # copies the live vectors, then waits: changes made now must be replayed
        fresh = real(self)
        building.set()
        assert release.wait(60)
        return fresh

    monkeypatch.setattr(VectorIndex, "rebuild", slow)
    saver = threading.Thread(target=hub.search.save)
    saver.start()
    assert building.wait(30)
    desc = "Writes Python unit tests for functions."
    hub.adapters.patch(alice, "alice", "summarize", description=desc)
    hub.adapters.delete(alice, "alice", "sql")
    assert names(hub.search.search(None, "generate pytest tests for my code", k=1)) == ["alice/summarize"]
    release.set()
    saver.join(30)
    index = hub.search._index
    assert index is not old and old.n_tombstones == 4 and index.n_tombstones == 2  # the replayed delete and patch
    rows = _rows(hub)
    assert "alice/sql" not in rows and len(index) == 3 and all(rows[n].id in index for n in rows)
    a = rows["alice/summarize"]
    want = hub.search.embed([embedding_text(a.namespace, a.name, desc, a.tags)])[0]
    np.testing.assert_allclose(index.vectors([a.id])[0], want, atol=1e-6)
    assert names(hub.search.search(None, "generate pytest tests for my code", k=1)) == ["alice/summarize"]
    hub.search.save()
    assert not hub.search.is_stale()
