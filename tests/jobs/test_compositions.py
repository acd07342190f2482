"""Composition jobs through the service layer and an in-process worker, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
import torch

from hub.core.errors import (
    ConflictError,
    IncompatibleAdaptersError,
    InvalidInputError,
    NotFoundError,
    UnknownNameError,
)
from hub.jobs.queue import JobQueue
from hub.jobs.reporter import JobCancelled, QueueReporter
from hub.jobs.worker import Worker
from hub.services.compositions import (
    CompositionRequest,
    similarity_weights,
)
from tests.services.util import files_of, registry_state


@pytest.fixture
def setup(hub, adapter_dirs):
    alice = hub.users.ensure_user("alice")
    a, b, _ = adapter_dirs
    hub.publisher.publish(alice, "alice/upper", files_of(a), description="convert text to upper case letters",
                         tags=["case"])
    hub.publisher.publish(alice, "alice/reverse", files_of(b), description="reverse the order of characters",
                         tags=["order"])
    return hub, alice


def _run_all(hub):
    w = Worker(hub.queue, hub.handlers, name="test-worker")
    while w.run_once():
        pass


def test_explicit_cat_equals_weighted_sum_and_records_lineage(setup):
    hub, alice = setup
    svc = hub.compositions
    job, dedup = svc.submit(alice, CompositionRequest(sources=("alice/upper@1", "alice/reverse"),
                                                      weights=(1.0, 0.5), method="cat", name="alice/mix"))
    assert job.status == "queued" and not dedup
    _run_all(hub)
    done = svc.jobs.get(job.id, alice.id)
    assert done.status == "succeeded", done.error
    assert done.result["adapter"] == "alice/mix" and done.result["version"] == 1
    assert any("published alice/mix@1" in line for line in done.log)
    merged, _ = hub.adapters.load(alice, "alice/mix", 1)
    a, _ = hub.adapters.load(alice, "alice/upper", 1)
    b, _ = hub.adapters.load(alice, "alice/reverse", 1)
    for m, d in merged.deltas(torch.float64).items():
        expect = a.layers[m].delta(torch.float64) + 0.5 * b.layers[m].delta(torch.float64)
        torch.testing.assert_close(d, expect, rtol=1e-5, atol=1e-6)
    lineage = hub.adapters.lineage(alice, "alice", "mix", 1)
    assert sorted((p["method"], p["weight"]) for p in lineage.parents) == [("cat", 0.5), ("cat", 1.0)]
    ver = hub.adapters.version(alice, "alice", "mix", 1)
    assert ver.provenance["method"] == "cat" and len(ver.provenance["parents"]) == 2
    assert "merged_from" in ver.model_card  # generated card carries the lineage

    again, dedup = svc.submit(alice, CompositionRequest(sources=("alice/upper@1", "alice/reverse@1"),
                                                        weights=(1.0, 0.5), method="cat", name="alice/mix"))
    assert dedup and again.id == job.id  # same resolved recipe -> the same job and result


def test_the_same_recipe_under_a_new_name_or_after_its_result_was_deleted_is_a_new_job(setup):
    """A job is reused only when it gives what is asked: the same output name, and (done) its result still there.
    The old one was returned, "published alice/mix@1", and the name asked for never appeared."""
    hub, alice = setup
    svc = hub.compositions

    def compose(name: str):
        return svc.submit(alice, CompositionRequest(sources=("alice/upper@1", "alice/reverse@1"), weights=(0.7, 0.3),
                                                    method="linear", name=name))

    first, _ = compose("alice/mix-a")
    _run_all(hub)
    assert compose("alice/mix-a") == (svc.jobs.get(first.id, alice.id), True)
    other, dedup = compose("alice/mix-b")  # a new name: a new job, which publishes that name
    assert not dedup and other.id != first.id
    _run_all(hub)
    assert svc.jobs.get(other.id, alice.id).result["adapter"] == "alice/mix-b"
    hub.adapters.delete(alice, "alice", "mix-a")
    again, dedup = compose("alice/mix-a")  # its result was deleted: made again
    assert not dedup and again.id != first.id
    _run_all(hub)
    assert hub.adapters.get(alice, "alice", "mix-a").latest_version == 1


def test_task_description_retrieves_and_auto_explains(setup):
    hub, alice = setup
    svc = hub.compositions
    job, _ = svc.submit(alice, CompositionRequest(task="make every letter a capital letter",
                                                  base_model="loom-test/pico-llama", method="auto", k=2,
                                                  min_score=0.05))
    assert job.request["sources"][0]["name"] == "alice/upper"  # most similar first
    _run_all(hub)
    done = svc.jobs.get(job.id, alice.id)
    assert done.status == "succeeded", done.error
    assert any("auto chose" in line for line in done.log)
    assert any("retrieved for the task" in line for line in done.log)
    assert done.result["reason"]
    ver = hub.adapters.version(alice, *done.result["adapter"].split("/"), done.result["version"])
    assert ver.provenance["recipe"]["task"] == "make every letter a capital letter"
    # weights: softmax(similarity / T) over the retrieved; a clearly closer adapter keeps nearly all of it
    sims = job.request["similarities"]
    expect = similarity_weights(sims)
    got = job.request["weights"]
    assert got == pytest.approx(expect, abs=1e-5) and sum(got) == pytest.approx(1.0, abs=1e-5)
    if len(sims) == 2:
        assert got[0] > got[1]


def test_auto_on_a_task_says_the_weights_it_uses(setup, adapter_dirs):
    hub, alice = setup
    desc = "convert text to upper case letters"  # alice/upper's: a tie, so both are kept and cat merges them
    hub.publisher.publish(alice, "alice/upper-too", files_of(adapter_dirs[2]), description=desc, tags=["case"])
    job, _ = hub.compositions.submit(alice, CompositionRequest(task=desc, base_model="loom-test/pico-llama",
                                                               method="auto", k=2, min_score=0.05))
    _run_all(hub)
    done = hub.compositions.jobs.get(job.id, alice.id)
    assert done.status == "succeeded", done.error
    retrieved = next(line for line in done.log if "retrieved for the task" in line)
    chose = next(line for line in done.log if "auto chose " in line)
    # both lines say what the weights are: softmax(similarity / T), which sum to 1 (auto said "the task
    # similarities normalised to sum 1", which they are not)
    assert "weights softmax(similarity / 0.02)" in retrieved and "auto chose cat: " in chose
    assert "task similarities" not in chose and "a task's softmax weights already are" in chose
    lineage = hub.adapters.lineage(alice, *done.result["adapter"].split("/"), done.result["version"])
    assert sorted(p["weight"] for p in lineage.parents) == pytest.approx(sorted(job.request["weights"]), abs=1e-6)


def test_similarity_weights_favour_a_clear_best_and_share_near_ties():
    w = similarity_weights([0.60, 0.50, 0.40])
    assert w[0] > 0.99 and sum(w) == pytest.approx(1.0)
    w = similarity_weights([0.60, 0.595])
    assert 0.5 < w[0] < 0.6 and w[1] > 0.4
    assert similarity_weights([0.3]) == [1.0]


BAD_REQUESTS = [
    ({"sources": ("alice/upper",), "method": "nope"}, UnknownNameError, "known: cat"),
    ({"sources": ("alice/upper", "alice/reverse"), "method": "ties", "params": {"density": 1.5}},
     InvalidInputError, "density"),
    ({"sources": ("alice/upper",), "method": "cat", "params": {"bogus": 1}}, InvalidInputError, "bogus"),
    ({"sources": ("alice/ghost",), "method": "cat"}, NotFoundError, "ghost"),
    ({"sources": ("alice/upper",), "task": "x", "base_model": "b"}, InvalidInputError, "either.*not both"),
    ({"method": "cat"}, InvalidInputError, "either.*neither was given"),
    ({"task": "upper case"}, InvalidInputError, "base_model"),
    ({"task": "upper case", "base_model": "some/other-base"}, NotFoundError, "similar"),
    ({"sources": ("alice/upper", "alice/reverse"), "weights": (1.0,), "method": "cat"}, InvalidInputError,
     "weights"),
    ({"sources": ("not a name",), "method": "cat"}, InvalidInputError, "namespace/name"),
]


def test_bad_requests_are_refused_at_submit(setup):
    hub, alice = setup
    before = registry_state(hub)
    for kwargs, error, words in BAD_REQUESTS:
        with pytest.raises(error, match=words):
            hub.compositions.submit(alice, CompositionRequest(**kwargs))
    assert registry_state(hub) == before
    assert hub.jobs.list(alice.id) == []


def test_different_base_models_are_incompatible(setup, tiny_model, tmp_path):
    from tests.helpers import make_peft_adapter

    hub, alice = setup
    other = make_peft_adapter(tiny_model, tmp_path / "o", seed=9, base_id="loom-test/other-base")
    hub.publisher.publish(alice, "alice/other", files_of(other), description="something else")
    with pytest.raises(IncompatibleAdaptersError, match="different base models"):
        hub.compositions.submit(alice, CompositionRequest(sources=("alice/upper", "alice/other"),
                                                                 method="cat"))


def test_cancel_queued_and_running_jobs_publish_nothing(setup):
    hub, alice = setup
    svc = hub.compositions
    queued, _ = svc.submit(alice, CompositionRequest(sources=("alice/upper",), method="linear", name="alice/q"))
    assert svc.jobs.cancel(queued.id, alice.id).status == "cancelled"
    with pytest.raises(ConflictError, match="already cancelled"):
        svc.jobs.cancel(queued.id, alice.id)
    assert not Worker(hub.queue, hub.handlers).run_once()  # nothing left to run

    running, _ = svc.submit(alice, CompositionRequest(sources=("alice/upper", "alice/reverse"), method="cat",
                                                      name="alice/r"))
    q = JobQueue(hub.sessions)
    claimed = q.claim("w1")
    assert claimed.id == running.id and claimed.status == "running"
    assert q.claim("w2") is None  # exactly one worker wins
    svc.jobs.cancel(running.id, alice.id)
    before = registry_state(hub)
    with pytest.raises(JobCancelled):
        hub.handlers["compose"](claimed, QueueReporter(q, claimed.id, min_interval=0))
    assert registry_state(hub)[:2] == before[:2]  # no adapter, no version


def test_failed_job_reports_the_error_and_publishes_nothing(setup):
    hub, alice = setup
    svc = hub.compositions
    job, _ = svc.submit(alice, CompositionRequest(sources=("alice/upper", "alice/reverse"), method="cat",
                                                  name="alice/f"))
    hub.adapters.delete(alice, "alice", "reverse")  # the source disappears before the worker runs
    names_before = registry_state(hub)[0]
    _run_all(hub)
    done = svc.jobs.get(job.id, alice.id)
    assert done.status == "failed" and done.error["code"] == "not_found" and "reverse" in done.error["message"]
    assert registry_state(hub)[0] == names_before


def test_jobs_are_private_to_their_owner(setup):
    hub, alice = setup
    bob = hub.users.ensure_user("bob")
    job, _ = hub.compositions.submit(alice, CompositionRequest(sources=("alice/upper",), method="linear"))
    with pytest.raises(NotFoundError):
        hub.jobs.get(job.id, bob.id)
    with pytest.raises(NotFoundError):
        hub.jobs.cancel(job.id, bob.id)


def test_stale_running_job_is_requeued(setup):
    from datetime import timedelta

    hub, alice = setup
    job, _ = hub.compositions.submit(alice, CompositionRequest(sources=("alice/upper",), method="linear"))
    q = JobQueue(hub.sessions)
    assert q.claim("dead-worker").id == job.id
    assert q.requeue_stale(older_than=timedelta(seconds=-1)) == 1
    assert q.get(job.id, check_owner=False).status == "queued"
    _run_all(hub)
    assert q.get(job.id, check_owner=False).status == "succeeded"


def test_a_composed_adapter_inherits_the_license_its_parents_share(setup, adapter_dirs):
    """#18.12: parents all MIT -> the merge is MIT; parents of different licenses -> no license claimed."""
    hub, alice = setup
    hub.adapters.patch(alice, "alice", "upper", license="mit")
    hub.adapters.patch(alice, "alice", "reverse", license="mit")
    hub.publisher.publish(alice, "alice/third", files_of(adapter_dirs[0]), description="x", license="apache-2.0")
    same, _ = hub.compositions.submit(alice, CompositionRequest(sources=("alice/upper", "alice/reverse"),
                                                                method="cat", name="alice/both-mit"))
    mixed, _ = hub.compositions.submit(alice, CompositionRequest(sources=("alice/upper", "alice/third"),
                                                                 method="cat", name="alice/mixed"))
    _run_all(hub)
    assert hub.jobs.get(same.id, alice.id).status == "succeeded"
    assert hub.jobs.get(mixed.id, alice.id).status == "succeeded"
    assert hub.adapters.get(alice, "alice", "both-mit").license == "mit"
    assert hub.adapters.get(alice, "alice", "mixed").license is None
