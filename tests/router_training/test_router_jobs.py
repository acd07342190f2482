"""Router training as a job: submit -> worker -> a kind-"router" artifact with lineage, served by inference."""

from __future__ import annotations

import pytest
import torch

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError, PermissionDeniedError
from hub.jobs.queue import JobQueue
from hub.jobs.worker import Worker
from hub.services.router_training import RouterTrainRequest
from tests.router_training.conftest import BASE_ID, EXPERTS, SAMPLES, publish


def _train(hub, name="alice/router", steps=30, params=None, **kw):
    kw.setdefault("recipe", "paper")  # these tests read the paper settings' gates (site_input) directly
    alice = hub.users.ensure_user("alice")
    req = RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS), name=name, steps=steps,
                             params=params or {"k": 1}, train={"lr": 3e-2, "batch_size": 8, "seed": 0}, **kw)
    job, dedup = hub.routers.submit(alice, req)
    assert not dedup and job.status == "queued"
    assert Worker(hub.queue, hub.handlers, "test").run_once()
    return JobQueue(hub.sessions).get(job.id, alice.id)


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_job_publishes_a_router_with_lineage_and_it_is_served(rhub, base_dir):
    from hub.services.artifacts import read_router_state
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    job = _train(rhub)
    assert job.status == "succeeded", job.error
    assert job.result["router"] == "alice/router" and job.result["version"] == 1
    assert job.result["experts"] == EXPERTS
    steps_logged = [m for m in job.log if "trained: loss" in m]
    assert steps_logged and job.result["final_loss"] < job.result["first_loss"]

    row = rhub.adapters.get(None, "alice", "router")
    assert row.kind == "router" and row.base_model == BASE_ID
    lin = rhub.adapters.lineage(None, "alice", "router")
    assert sorted(p["version"] for p in lin.parents) == sorted(EXPERTS)
    assert {p["method"] for p in lin.parents} == {"router_train"}
    assert [c["version"] for c in rhub.adapters.lineage(None, "alice", "upper").children] == ["alice/router@1"]
    ver = rhub.adapters.version(None, "alice", "router")
    assert ver.provenance["method"] == "router_train"

    # the gates learned the experts' own samples, in bank order (MeteoRA's supervised CE on the task id)
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from routing.checkpoint import load_router
    from routing.train import TrainConfig, _examples, _format, collate, gate_accuracy

    state = read_router_state(rhub.adapters, ver, "alice/router@1")
    assert state.expert_ids == EXPERTS and state.preset == "meteora"
    experts = [rhub.adapters.load(None, e.split("@")[0], 1)[0] for e in EXPERTS]
    model = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    model.config.name_or_path = BASE_ID
    tok = AutoTokenizer.from_pretrained(str(base_dir))
    data = [[{"input": i, "output": o} for i, o in rows] for rows in SAMPLES.values()]
    batch = collate(_examples(data, 2, _format(tok, served=True), TrainConfig()), 256)  # as the job trains
    trained = gate_accuracy(load_router(model, experts, state, names=EXPERTS), batch)
    assert trained > 0.8, trained  # chance is 0.5
    from routing import build_router

    fresh = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    fresh.config.name_or_path = BASE_ID
    torch.manual_seed(0)
    untrained = gate_accuracy(build_router(fresh, experts, "meteora", state.config, names=EXPERTS), batch)
    assert trained > untrained + 0.2, (trained, untrained)

    svc = inference_service(rhub, "cpu")
    try:
        res = svc.complete(None, CompletionRequest(model="alice/router", prompts=["#12 13"], max_tokens=4,
                                                   temperature=0.0))
    finally:
        svc.close()
    c = res.choices[0]
    assert c.route == "router" and res.router == "alice/router@1"
    assert c.gate_weights and all(len(w) == 2 for w in c.gate_weights.values())
    assert set(c.adapters) <= set(EXPERTS) and c.adapters


def test_same_recipe_is_deduplicated_and_a_new_version_is_published(rhub):
    alice = rhub.users.ensure_user("alice")
    req = RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS), name="alice/r2", steps=2)
    svc = rhub.routers
    first, d1 = svc.submit(alice, req)
    again, d2 = svc.submit(alice, req)
    assert (d1, d2) == (False, True) and again.id == first.id
    other, d3 = svc.submit(alice, RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS), name="alice/r2",
                                                     steps=3))
    assert not d3 and other.id != first.id
    worker = Worker(rhub.queue, rhub.handlers, "test")
    assert worker.run_once() and worker.run_once()
    assert [x.number for x in rhub.adapters.versions(None, "alice", "r2")] in ([1, 2], [2, 1])


BAD = [
    ({"preset": "nope"}, InvalidInputError, "meteora"),
    ({"preset": "semantic"}, InvalidInputError, "training-free"),
    ({"params": {"k": 0}}, InvalidInputError, "k"),
    ({"params": {"bogus": 1}}, InvalidInputError, "bogus"),
    ({"train": {"lr": -1.0}}, InvalidInputError, "lr"),
    ({"experts": ("alice/upper", "carol/nosamples")}, InvalidInputError, "carol/nosamples@1"),
    ({"experts": ("alice/upper", "nobody/missing")}, NotFoundError, "nobody/missing"),
    ({"experts": ("alice/upper", "carol/other")}, IncompatibleAdaptersError, "different base"),
    ({"experts": ("carol/other", "carol/other2")}, InvalidInputError, "no local weights"),
    ({"experts": ("alice/upper", "alice/upper@1")}, InvalidInputError, "distinct"),
    ({"name": "bob/mine"}, PermissionDeniedError, "namespace bob belongs to bob"),
    ({"name": "alice/upper"}, PermissionDeniedError, "not a router"),
]


def test_bad_requests_fail_at_submit_and_queue_nothing(rhub, expert_dirs):
    alice = rhub.users.ensure_user("alice")
    publish(rhub, expert_dirs["carol/other"], "carol/other2", SAMPLES["alice/upper"])  # 2 on the weightless base
    for kw, err, text in BAD:
        fields = {"preset": "meteora", "experts": tuple(EXPERTS), "name": "alice/router", "steps": 5, **kw}
        with pytest.raises(err) as e:
            rhub.routers.submit(alice, RouterTrainRequest(**fields))
        assert text in str(e.value), (kw, str(e.value))
    assert JobQueue(rhub.sessions).list(alice.id) == []


def test_request_fields_are_validated_where_built():
    with pytest.raises(InvalidInputError, match="steps"):
        RouterTrainRequest(preset="meteora", experts=("a/b", "a/c"), name="a/r", steps=0)
    for experts in ((), ("a/b",), ("a/b", "a/b")):  # a gate over one expert learns nothing
        with pytest.raises(InvalidInputError, match="at least 2 different experts"):
            RouterTrainRequest(preset="meteora", experts=experts, name="a/r")
    with pytest.raises(InvalidInputError, match="momentum"):
        RouterTrainRequest(preset="meteora", experts=("a/b", "a/c"), name="a/r", train={"momentum": 0.9})


def test_private_expert_of_someone_else_is_not_found(rhub):
    rhub.adapters.patch(rhub.users.ensure_user("bob"), "bob", "digits", visibility="private")
    with pytest.raises(NotFoundError):
        rhub.routers.submit(rhub.users.ensure_user("alice"), RouterTrainRequest(
            preset="meteora", experts=tuple(EXPERTS), name="alice/router"))


def test_job_cancelled_while_running_publishes_nothing(rhub):
    from hub.jobs.reporter import JobCancelled, QueueReporter

    alice = rhub.users.ensure_user("alice")
    q = JobQueue(rhub.sessions)
    job, _ = rhub.routers.submit(alice, RouterTrainRequest(
        preset="meteora", experts=tuple(EXPERTS), name="alice/never", steps=50))
    running = q.claim("test", ("router_train",))
    assert running is not None and running.id == job.id
    assert q.cancel(job.id, alice.id).cancel_requested
    with pytest.raises(JobCancelled):
        rhub.handlers["router_train"](running, QueueReporter(q, job.id))
    with pytest.raises(NotFoundError):
        rhub.adapters.get(None, "alice", "never")


@pytest.mark.parametrize("db_kind", ["sqlite"])
@pytest.mark.parametrize("lexical_dim", [0, 256])
def test_router_reading_the_request_embedding_trains_and_serves(rhub, lexical_dim):
    """config features="embedding": the job embeds each sample with the hub's MiniLM (and, with lexical_dim,
    hashes its words); serving computes the prompt's features the same way and the gates route on them."""
    from hub.services.artifacts import read_router_state
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    job = _train(rhub, name="alice/emb-router", params={"k": 1, "features": "embedding", "lexical_dim": lexical_dim})
    assert job.status == "succeeded", job.error
    ver = rhub.adapters.version(None, "alice", "emb-router")
    state = read_router_state(rhub.adapters, ver, "alice/emb-router@1")
    assert state.config["features"] == "embedding" and state.config["embedding_dim"] == 384
    assert state.config["lexical_dim"] == lexical_dim
    svc = inference_service(rhub, "cpu")
    try:
        picks = {}
        for prompt in ("up: cow", "#14 15"):
            res = svc.complete(None, CompletionRequest(model="alice/emb-router", prompts=[prompt], max_tokens=3,
                                                       temperature=0.0))
            c = res.choices[0]
            assert c.route == "router" and c.gate_weights
            picks[prompt] = max(c.adapters, key=c.adapters.get)
    finally:
        svc.close()
    assert picks == {"up: cow": "alice/upper@1", "#14 15": "bob/digits@1"}


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_multi_intent_router_job_serves_one_expert_per_task_asked_for(rhub):
    """MeteoRA ``multi_label`` + ``mix_intents`` through the job and the inference service: a request naming one
    expert's task gets that expert alone, a request naming both tasks gets both at full strength (without
    ``mix_intents`` the joined request gets one expert)."""
    from hub.services.container import inference_service
    from hub.services.inference import CompletionRequest

    job = _train(rhub, name="alice/multi", steps=60, params={"k": 2, "multi_label": True, "mix_intents": 0.5,
                                                             "features": "embedding", "lexical_dim": 256})
    assert job.status == "succeeded", job.error
    svc = inference_service(rhub, "cpu")
    try:
        used = {}
        for prompt in ("up: cow", "#14 15", "up: cow #14 15"):
            res = svc.complete(None, CompletionRequest(model="alice/multi", prompts=[prompt], max_tokens=2,
                                                       temperature=0.0))
            used[prompt] = {n: round(w, 1) for n, w in res.choices[0].adapters.items()}
    finally:
        svc.close()
    assert used == {"up: cow": {"alice/upper@1": 1.0}, "#14 15": {"bob/digits@1": 1.0},
                    "up: cow #14 15": {"alice/upper@1": 1.0, "bob/digits@1": 1.0}}, used
