"""The same checks for every registered router preset (generated from the registry)."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, UnknownNameError
from routing import ROUTERS, build_router

PRESETS = ROUTERS.names()
#: a config per preset that exercises its routing on the 4 pico experts
CONFIGS = {
    "meteora": {"k": 2},
    "mole_llava": {"attention_expert": 1},
    "mole_wu": {},
    "smora": {"k": 3},
    "lora_mixer": {"k": 2},
    "semantic": {"k": 2, "threshold": 0.0, "temperature": 0.5},
}
VEC = torch.eye(4, 6) + 0.1  # adapter vectors for the semantic preset (N=4, d=6)


def _build(model, experts, name, **over):
    cfg = {**CONFIGS[name], **over}
    extras = {"adapter_vectors": VEC} if name == "semantic" else {}
    torch.manual_seed(3)
    routed = build_router(model, experts, name, cfg, names=[f"e{i}" for i in range(len(experts))], **extras)
    for g in routed.gates.values():  # make gates non-trivial but deterministic
        for p in g.parameters():
            if p.dim() == 2:
                torch.nn.init.normal_(p, std=1.0, generator=torch.Generator().manual_seed(p.numel()))
    if name == "semantic":
        routed.router.apply(routed, VEC[[1, 2]] + torch.tensor([[0.0] * 5 + [0.3]] * 2))
    return routed


def test_every_preset_has_a_contract_row_and_docs():
    assert set(PRESETS) == set(CONFIGS)
    for e in ROUTERS.entries():
        assert e.paper and e.paper.startswith("https://arxiv.org/"), e.name
        assert e.summary and e.obj.config_cls.__doc__, e.name
        assert e.obj.build.__module__.startswith("routing.routers.")
    assert {"mole_llava", "mole_wu"} <= set(PRESETS)
    with pytest.raises(UnknownNameError, match="known: lora_mixer"):
        ROUTERS.get("mole")


@pytest.mark.parametrize("name", PRESETS)
def test_shapes_determinism_finite_and_effect(name, model, base_model, experts, batch):
    ids, am = batch
    routed = _build(model, experts, name)
    with torch.no_grad():
        a = routed(input_ids=ids, attention_mask=am).logits
        b = routed(input_ids=ids, attention_mask=am).logits
        base = base_model(input_ids=ids, attention_mask=am).logits
    assert a.shape == base.shape
    assert torch.equal(a, b)
    assert torch.isfinite(a).all()
    assert not torch.allclose(a, base, atol=1e-4)


@pytest.mark.parametrize("name", PRESETS)
def test_config_json_round_trip_and_validation(name):
    cls = ROUTERS.get(name).config_cls
    cfg = cls.from_dict(CONFIGS[name])
    assert cls.from_json(cfg.to_json()) == cfg
    with pytest.raises(InvalidInputError, match="unknown"):
        cls.from_dict({"no_such_field": 1})
    with pytest.raises(InvalidInputError, match="backend"):
        cls.from_dict({"backend": "cuda-magic"})
    with pytest.raises(InvalidInputError, match="dropout must be a number, got '0.1'"):  # JSON params are untyped
        cls.from_dict({"dropout": "0.1"})
    with pytest.raises(InvalidInputError, match="lexical_dim must be an integer, got 8.0"):
        cls.from_dict({"lexical_dim": 8.0})
    for f in dataclasses.fields(cls):
        if str(f.type) == "bool":
            with pytest.raises(InvalidInputError, match=f"{f.name} must be true or false"):
                cls.from_dict({f.name: "false"})


EXPECTED_SUM = {"smora": 3.0}


@pytest.mark.parametrize("name", PRESETS)
def test_gate_weights_sum_as_specified(name, model, experts, batch):
    ids, am = batch
    routed = _build(model, experts, name)
    routed.context.collect = True
    with torch.no_grad():
        routed(input_ids=ids, attention_mask=am)
    if name == "semantic":
        decisions = routed.router.route(VEC[[0, 3]])
        assert all(abs(sum(d.weights) - 1.0) < 1e-6 and len(d.indices) == 2 for d in decisions)
        return
    recs = [r for rs in routed.context.records.values() for r in rs]
    assert recs
    for rec in recs:
        if rec.logits is None:  # mole_llava's shared attention LoRA: one expert, weight 1
            assert torch.equal(rec.weights.val, torch.ones_like(rec.weights.val))
            continue
        w = rec.weights.dense(rec.logits.shape[1])
        if name != "mole_wu":  # top-k presets: exactly k non-zero weights per token
            nnz = (w != 0).sum(-1)
            assert bool((nnz == CONFIGS[name].get("k", 1)).all()), name
        want = torch.full((w.shape[0],), EXPECTED_SUM.get(name, 1.0))
        torch.testing.assert_close(w.sum(-1), want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("name", [n for n in PRESETS if ROUTERS.get(n).granularity != "sequence"])
def test_kv_cache_decoding_equals_full_recomputation(name, model, experts, batch):
    ids, am = batch
    routed = _build(model, experts, name)
    with torch.no_grad():
        out = routed(input_ids=ids, attention_mask=am, use_cache=True)
        seq, mask, cache = ids, am, out.cache
        for _ in range(3):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            seq, mask = torch.cat([seq, nxt], 1), torch.cat([mask, torch.ones_like(nxt)], 1)
            out = routed(input_ids=nxt, attention_mask=mask, cache=cache, use_cache=True)
            cache = out.cache
            full = routed(input_ids=seq, attention_mask=mask).logits[:, -1]
            torch.testing.assert_close(out.logits[:, -1], full, atol=1e-5, rtol=1e-5)


def test_sequence_gates_are_computed_once_at_prefill(model, experts, batch):
    ids, am = batch
    routed = _build(model, experts, "mole_wu")
    routed.context.collect = True
    with torch.no_grad():
        out = routed(input_ids=ids, attention_mask=am, use_cache=True)
        prefill_rows = dict(routed.context.sequence_rows)
        cache = out.cache
        for _ in range(3):
            nxt = out.logits[:, -1].argmax(-1, keepdim=True)
            am = torch.cat([am, torch.ones_like(nxt)], 1)
            out = routed(input_ids=nxt, attention_mask=am, cache=cache, use_cache=True)
            cache = out.cache
    assert all(len(v) == 1 for v in routed.context.records.values())  # one gate call per block
    assert routed.context.sequence_rows == prefill_rows
    gen = routed.generate(input_ids=ids, attention_mask=am[:, :8], max_new_tokens=3, do_sample=False)
    assert gen.shape == (2, 11)


def test_generate_decodes_with_the_prefill_sequence_gates(model, experts, batch):
    """``generate()`` hands the KV cache over as ``cache``: its decode steps reuse the prefill's sequence gates,
    exactly as a hand-written cached loop does (not gates recomputed from the one new token)."""
    ids, am = batch
    routed = _build(model, experts, "mole_wu")
    routed.context.collect = True
    with torch.no_grad():
        res = routed.generate(input_ids=ids, attention_mask=am, max_new_tokens=3, do_sample=False,
                              output_logits=True, return_dict_in_generate=True)
        assert all(len(v) == 1 for v in routed.context.records.values())  # one gate call per block
        pos = (am.cumsum(-1) - 1).clamp(min=0)
        out = routed(input_ids=ids, attention_mask=am, position_ids=pos, use_cache=True)
        mask, cache, logits = am, out.cache, [out.logits[:, -1]]
        for t in range(2):
            nxt = res.sequences[:, ids.shape[1] + t, None]
            mask, pos = torch.cat([mask, torch.ones_like(nxt)], 1), pos[:, -1:] + 1
            out = routed(input_ids=nxt, attention_mask=mask, position_ids=pos, cache=cache, use_cache=True)
            cache = out.cache
            logits.append(out.logits[:, -1])
    torch.testing.assert_close(torch.stack(res.logits, 1), torch.stack(logits, 1), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_rows_are_independent_of_the_batch(name, model, experts, batch):
    ids, am = batch
    routed = _build(model, experts, name)
    with torch.no_grad():
        both = routed(input_ids=ids, attention_mask=am).logits
        if name == "semantic":
            routed.router.apply(routed, VEC[[2]] + torch.tensor([[0.0] * 5 + [0.3]]))
        alone = routed(input_ids=ids[1:], attention_mask=am[1:]).logits
    torch.testing.assert_close(alone[0, 3:], both[1, 3:], atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("name", PRESETS)
def test_incompatible_experts_give_the_domain_error(name, model, experts):
    other = experts[0].with_spec(base_model="someone/else")
    extras = {"adapter_vectors": VEC[:2]} if name == "semantic" else {}
    with pytest.raises(IncompatibleAdaptersError):
        build_router(copy.deepcopy(model), [experts[1], other], name, CONFIGS[name] | {"k": 1}
                     if "k" in CONFIGS[name] else {}, **extras)
