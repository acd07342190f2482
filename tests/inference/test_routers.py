"""Router artifacts (kind "router"): served like the routing engine runs them; deleted experts -> clear 422."""

from __future__ import annotations

import pytest
import torch

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from hub.services.inference import CompletionRequest
from hub.services.inference.service import encode_prompt
from tests.inference.conftest import BASE_ID

EXPERTS = ["alice/french@1", "alice/math@1", "bob/python@1"]


def raw_base(base_dir):
    from transformers import AutoModelForCausalLM

    m = AutoModelForCausalLM.from_pretrained(str(base_dir)).eval()
    m.config.name_or_path = BASE_ID
    return m


#: routers whose gates sit in different places: per linear (MeteoRA, also multi-label), per decoder layer
#: routing attention and MLP together (LLaVA-MoLE with routed_attention)
SERVED = {"meteora": ("meteora", {"k": 2}), "meteora-multi-label": ("meteora", {"k": 2, "multi_label": True}),
          "mole_llava-attn": ("mole_llava", {"routed_attention": True})}


@pytest.fixture(params=["meteora"])
def router_state(request, service, base_dir):
    from routing import build_router
    from routing.checkpoint import router_state

    preset, cfg = SERVED[request.param]
    experts = [service.resolver.adapter(None, e, BASE_ID, e)[1] for e in EXPERTS]
    torch.manual_seed(3)
    routed = build_router(raw_base(base_dir), experts, preset, cfg, names=EXPERTS)
    if preset == "mole_llava":  # a non-trivial gate (the bias starts at zero: top-1 would always be expert 0)
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
