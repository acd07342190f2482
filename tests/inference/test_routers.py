"""Router artifacts (kind "router"): served like the routing engine runs them; deleted experts -> clear 422."""

from __future__ import annotations

import threading
import time

import pytest
import torch

from hub.core.errors import (
    IncompatibleAdaptersError,
    InvalidInputError,
    RequestCancelledError,
    TooManyRequestsError,
)
from hub.services.inference import CompletionRequest
from hub.services.inference.service import encode_prompt
from tests.inference.conftest import BASE_ID, stream_events

EXPERTS = ["alice/french@1", "alice/math@1", "bob/python@1"]


def raw_base(base_dir):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    m.config.name_or_path = BASE_ID
    return m


#: routers whose gates sit in different places: per linear (MeteoRA, also multi-label), per decoder layer
#: routing attention and MLP together (LLaVA-MoLE with routed_attention)
SERVED = {"meteora": ("meteora", {"k": 2}), "meteora-multi-label": ("meteora", {"k": 2, "multi_label": True}),
          "mole_llava-attn": ("mole_llava", {"routed_attention": True}),
          "mole_wu": ("mole_wu", {"temperature": 0.2})}


@pytest.fixture(params=["meteora"])
def router_state(request, service, base_dir):
    from routing import build_router
    from routing.checkpoint import router_state

    preset, cfg = SERVED[request.param]
    experts = [service.resolver.adapter(None, e, BASE_ID, e)[1] for e in EXPERTS]
    torch.manual_seed(3)
    routed = build_router(raw_base(base_dir), experts, preset, cfg, names=EXPERTS)
    if preset in ("mole_llava", "mole_wu"):  # a non-trivial gate (top-1 of a near-zero gate is always expert 0)
        for g in routed.gates.values():
            torch.nn.init.normal_(g.proj.weight, std=1.0)
    return router_state(routed, experts), experts


@pytest.mark.parametrize("router_state", list(SERVED), indirect=True)
def test_router_artifact_served_like_the_engine(service, ihub, base_dir, router_state):
    from routing.batching import generate_routed
    from routing.checkpoint import load_router
    from tests.helpers import publish_router

    state, experts = router_state
    alice = ihub.users.ensure_user("alice")
    assert publish_router(ihub, alice, "alice/mixer", state, description="three experts") == "alice/mixer@1"
    res = service.complete(None, CompletionRequest(model="alice/mixer", prompts=["Add 2 and 3"], max_tokens=8,
                                                   temperature=0.0))
    c = res.choices[0]
    assert c.route == "router" and res.router == "alice/mixer@1"
    assert c.gate_weights and all(len(w) == 3 for w in c.gate_weights.values())
    assert set(c.adapters) <= set(EXPERTS) and c.adapters
    # the oracle: the routing engine itself, on a fresh copy of the base with the same checkpoint
    lb = service.engine(BASE_ID)[0]
    ids = torch.tensor([encode_prompt(lb.tokenizer, "Add 2 and 3")])
    ref = generate_routed(load_router(raw_base(base_dir), experts, state, names=EXPERTS), ids,
                          torch.ones_like(ids), max_new_tokens=8, eos_token_id=258)
    toks = [t for t in ref.tokens[0] if t != 258]
    assert c.tokens == toks
    assert c.tokens != service.complete(None, CompletionRequest(model=BASE_ID, prompts=["Add 2 and 3"], max_tokens=8,
                                                                temperature=0.0)).choices[0].tokens
    models = {m["id"]: m for m in service.available(None)}
    assert models["alice/mixer"]["loom"]["kind"] == "router" and models["alice/mixer"]["parent"] == BASE_ID


@pytest.mark.parametrize("db_kind", ["sqlite", "postgresql"])
def test_router_with_deleted_expert_is_a_clear_error(service, ihub, router_state):
    from tests.helpers import publish_router

    state, _ = router_state
    alice, bob = ihub.users.ensure_user("alice"), ihub.users.ensure_user("bob")
    publish_router(ihub, alice, "alice/mixer", state)
    ihub.adapters.delete(bob, "bob", "python")
    with pytest.raises(IncompatibleAdaptersError) as e:
        service.complete(None, CompletionRequest(model="alice/mixer", prompts=["hi"], max_tokens=2))
    assert "bob/python@1" in str(e.value) and e.value.details["missing"] == ["bob/python@1"]
    assert service.routers.calls == 0


def test_router_artifact_without_files_is_refused(service, ihub, router_state):
    from tests.helpers import publish_router

    state, _ = router_state
    with pytest.raises(InvalidInputError):
        publish_router(ihub, ihub.users.ensure_user("alice"), "alice/empty", type(state)(
            preset="meteora", config={}, expert_ids=[], base_model=BASE_ID, tensors={}))


def greedy(service, model, prompt, n, **kw):
    return service.complete(None, CompletionRequest(model=model, prompts=[prompt], max_tokens=n, temperature=0.0,
                                                    **kw)).choices[0]


def slow(sched, ms=10):
    """Make each forward of the router's routed copy take ``ms`` longer (requests overlap)."""
    return sched.batch.runner.model.register_forward_pre_hook(lambda *a: time.sleep(ms / 1000))


@pytest.mark.parametrize("router_state", ["meteora", "mole_wu"], indirect=True)
def test_concurrent_router_requests_share_forwards_and_answer_as_alone(service, ihub, router_state):
    """Requests to one router join its batch mid-generation (iteration-level), and each answers exactly what it
    answers alone: tokens, the experts it used and its per-site gate weights."""
    from tests.helpers import publish_router

    publish_router(ihub, ihub.users.ensure_user("alice"), "alice/mixer", router_state[0])
    work = [("Add 2 and 3", 12), ("bonjour", 6), ("def f(x):", 10), ("multiply 7", 8), ("hi", 9)]
    alone = [greedy(service, "alice/mixer", p, n) for p, n in work]
    assert all(c.batch_size == 1 for c in alone)
    sched = service.routers.scheduler(service.resolve(None, "alice/mixer"))
    assert sched is not None and service.routers.calls == len(work)
    hook = slow(sched)
    forwards, out = sched.generate_calls, {}

    def ask(i):
        time.sleep(0.03 * i)  # arrivals spread over the first steps: rows join a running batch
        out[i] = greedy(service, "alice/mixer", *work[i])

    threads = [threading.Thread(target=ask, args=(i,)) for i in range(len(work))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    hook.remove()
    tokens = sum(len(c.tokens) for c in alone)
    assert sched.generate_calls - forwards < tokens  # fewer forwards than rows x tokens: rows shared them
    assert max(c.batch_size for c in out.values()) > 1 and max(sched.batch_sizes) > 1
    for i, c in out.items():
        assert c.tokens == alone[i].tokens and c.text == alone[i].text, work[i]
        assert c.adapters.keys() == alone[i].adapters.keys() and c.gate_weights.keys() == alone[i].gate_weights.keys()
        for site, w in c.gate_weights.items():
            torch.testing.assert_close(torch.tensor(w), torch.tensor(alone[i].gate_weights[site]), atol=1e-5,
                                       rtol=1e-4)
    # a streamed router row sends its text as it is generated
    req = CompletionRequest(model="alice/mixer", prompts=[work[0][0]], max_tokens=work[0][1], temperature=0.0)
    events = stream_events(service, req)
    pieces, res = [e[1] for e in events[:-1]], events[-1]
    assert pieces and "".join(pieces) == res.choices[0].text == alone[0].text


def test_router_rows_are_admitted_and_cancelled_like_plain_rows(service, ihub, router_state):
    from tests.helpers import publish_router

    ihub.settings.inference_max_batch = 1  # read when the router's scheduler is built
    publish_router(ihub, ihub.users.ensure_user("alice"), "alice/mixer", router_state[0])
    sched = service.routers.scheduler(service.resolve(None, "alice/mixer"))
    hook = slow(sched, 15)
    sched.admission.max_queued = 0
    cancel, errors = threading.Event(), []

    def long():
        try:
            service.complete(None, CompletionRequest(model="alice/mixer", prompts=["long one"], max_tokens=60,
                                                     temperature=0.0), cancel=cancel)
        except RequestCancelledError as e:
            errors.append(e)

    t = threading.Thread(target=long)
    t.start()
    deadline = time.monotonic() + 10
    while sched.num_running == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    with pytest.raises(TooManyRequestsError) as e:  # one running slot, a queue of 0: the next request is refused
        greedy(service, "alice/mixer", "another", 4)
    assert "LOOM_INFERENCE_MAX_QUEUED" in e.value.message and sched.num_waiting == 0
    from prometheus_client import generate_latest

    scrape = generate_latest(ihub.metrics.registry).decode()
    assert 'vllm:num_requests_running{model_name="alice/mixer@1"} 1.0' in scrape
    forwards = sched.generate_calls
    cancel.set()  # the client left: the row leaves at the next step
    t.join(10)
    assert errors and sched.num_running == 0 and sched.generate_calls - forwards <= 2
    hook.remove()
    sched.admission.max_queued = 4
    assert greedy(service, "alice/mixer", "another", 4).tokens  # the slot is free again
