"""Mixed-adapter batching against PEFT's adapter_names (the oracle), merging, generate API."""

from __future__ import annotations

import copy

import pytest
import torch

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError
from routing import build_router
from routing.batching import MixedAdapterModel, generate_routed
from tests.routing.test_presets import merged

ROWS = ["e2", "__base__", "e0", "e3", "e1", "e0"]


@pytest.fixture()
def engine(base_model, expert_dirs):
    eng = MixedAdapterModel(copy.deepcopy(base_model), capacity=2)  # grows to 4 while loading
    for i, d in enumerate(expert_dirs):
        eng.load_adapter(f"e{i}", d)
    return eng


def _ids(rows=6, t=7, seed=2):
    return torch.randint(3, 64, (rows, t), generator=torch.Generator().manual_seed(seed))


def test_each_row_equals_peft_adapter_names(engine, peft_oracle):
    ids = _ids()
    with torch.no_grad():
        got = engine(ids, ROWS).logits
        ref = peft_oracle(input_ids=ids, adapter_names=ROWS).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    assert engine.capacity == 4 and sorted(engine.slots.values()) == [0, 1, 2, 3]


def test_generate_equals_peft_generate_row_by_row(engine, peft_oracle):
    ids = _ids(rows=4, t=6, seed=3)
    am = torch.ones_like(ids)
    am[1, :2] = 0  # left padding
    rows = ["e1", "e3", "__base__", "e2"]
    res = engine.generate(ids, attention_mask=am, adapters=rows, max_new_tokens=5, greedy=True, eos_token_id=1)
    with torch.no_grad():
        ref = peft_oracle.generate(input_ids=ids, attention_mask=am, adapter_names=rows, max_new_tokens=5,
                                   do_sample=False, eos_token_id=1, pad_token_id=0)
    assert res.tokens == [r[:len(t)] for r, t in zip(ref[:, 6:].tolist(), res.tokens, strict=True)]
    assert all(len(t) == 5 or t[-1] == 1 for t in res.tokens)
    assert res.adapters == [{"e1": 1.0}, {"e3": 1.0}, {}, {"e2": 1.0}] and res.gate_weights is None


def test_weighted_mixture_row_equals_merged_deltas(engine, base_model, experts):
    ids = _ids(rows=2)
    with torch.no_grad():
        got = engine(ids, [{"e0": 0.5, "e2": 0.25}, "e1"]).logits
    oracle = merged(merged(base_model, experts[0], 0.5), experts[2], 0.25)
    with torch.no_grad():
        torch.testing.assert_close(got[0], oracle(input_ids=ids[:1]).logits[0], atol=1e-5, rtol=1e-5)


def test_merge_single_adapter_and_undo(engine, base_model, peft_oracle):
    ids = _ids(rows=3)
    before = {n: p.detach().clone() for n, p in engine.model.named_parameters() if n.endswith("base.weight")}
    engine.merge("e3")
    assert not all(torch.equal(p, before[n]) for n, p in engine.model.named_parameters() if n in before)
    with torch.no_grad():
        got = engine(ids, ["e3"] * 3).logits
        assert not any(lay.enabled for lay in engine.layers.values())  # nothing computed at run time
        ref = peft_oracle(input_ids=ids, adapter_names=["e3"] * 3).logits
        torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
        mixed = engine(ids, ["e3", "e0", "__base__"]).logits  # another adapter: unmerged automatically
        torch.testing.assert_close(mixed, peft_oracle(input_ids=ids, adapter_names=["e3", "e0", "__base__"]).logits,
                                   atol=1e-5, rtol=1e-5)
    assert engine.merged is None
    assert all(torch.equal(p, before[n]) for n, p in engine.model.named_parameters() if n in before)
    restored = engine.remove()
    with torch.no_grad():
        assert torch.equal(restored(input_ids=ids).logits, base_model(input_ids=ids).logits)


def test_unload_reuses_the_slot_and_bad_requests_are_domain_errors(engine, experts):
    slot = engine.slots["e1"]
    engine.unload_adapter("e1")
    with pytest.raises(NotFoundError, match="e1"):
        engine(_ids(rows=1), ["e1"])
    assert engine.load_adapter("again", experts[1]) == slot
    with pytest.raises(IncompatibleAdaptersError, match="other/base"):
        engine.load_adapter("x", experts[0].with_spec(base_model="other/base"))
    with pytest.raises(InvalidInputError, match="finite"):
        engine(_ids(rows=1), [{"e0": float("nan")}])
    with pytest.raises(InvalidInputError, match="one adapter spec per row"):
        engine(_ids(rows=2), ["e0"])
    with pytest.raises(InvalidInputError):
        engine.load_adapter("__base__", experts[0])


def test_generate_routed_reports_gate_weights_and_semantic_choices(base_model, experts, batch):
    ids, am = batch
    routed = build_router(copy.deepcopy(base_model), experts, "meteora", {"k": 2}, names=list("abcd"))
    res = generate_routed(routed, ids, am, max_new_tokens=3)
    assert len(res.tokens) == 2 and all(len(t) == 3 for t in res.tokens)
    site = "model.layers.1.mlp.down_proj"
    assert all(abs(sum(gw[site]) - 1.0) < 1e-5 and len(gw[site]) == 4 for gw in res.gate_weights)
    assert all(abs(sum(a.values()) - 1.0) < 1e-5 for a in res.adapters)
    sem = build_router(copy.deepcopy(base_model), experts, "semantic", {"k": 1, "threshold": 0.5},
                       names=list("abcd"), adapter_vectors=torch.eye(4))
    sem.router.apply(sem, torch.eye(4)[[2, 0]] * 0.1 + torch.tensor([[0, 0, 0, 0.0], [0, 0, 0, 0.0]]))
    res = generate_routed(sem, ids, am, max_new_tokens=2)
    assert res.adapters == [{"c": 1.0}, {"a": 1.0}]


def test_whole_batch_on_one_adapter_fast_path_equals_peft_and_the_general_path(engine, peft_oracle, base_model,
                                                                              experts):
    ids = _ids(rows=3)
    with torch.no_grad():
        fast = engine(ids, ["e2"] * 3).logits
        torch.testing.assert_close(fast, peft_oracle(input_ids=ids, adapter_names=["e2"] * 3).logits,
                                   atol=1e-5, rtol=1e-5)
        half = engine(ids, [{"e1": 0.5}] * 3).logits
    assert engine.context.rows["*"].single == (engine.slots["e1"], 0.5)
    slow = engine(ids, [{"e1": 0.5}] * 3).logits  # grad enabled: the general fold path
    torch.testing.assert_close(half, slow.detach(), atol=1e-5, rtol=1e-5)
    with torch.no_grad():
        torch.testing.assert_close(half, merged(base_model, experts[1], 0.5)(input_ids=ids).logits,
                                   atol=1e-5, rtol=1e-5)


def test_gathered_weights_are_reused_while_decoding_and_refreshed_on_reload(engine, experts, peft_oracle):
    ids = _ids(rows=2, t=1)  # decode-shaped: one token per row (a prefill gathers without caching)
    rows = ["e0", "e3"]
    with torch.no_grad():
        engine(ids, rows)
        w = engine.context.rows["*"]
        engine(ids, rows)
        assert engine.context.rows["*"] is w  # same rows: same weights object, gathered copies kept
        lay = engine.layers["model.layers.0.self_attn.q_proj"]
        assert lay._folded is not None and lay._folded[0] is w
        engine.load_adapter("e0", experts[1])  # replace e0's weights in place
        got = engine(ids, rows).logits
        ref = peft_oracle(input_ids=ids, adapter_names=["e1", "e3"]).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)


def test_rows_changed_in_place_equal_peft(engine, peft_oracle):
    """Weights that differ from the cached ones in some rows update those rows of the gathered copies in
    place (a continuous batch's join into a hole); every row still equals PEFT with its adapter, and a prefill
    in between does not disturb what the decode steps gathered."""
    ids = _ids(rows=4, t=1)
    lay = engine.layers["model.layers.0.self_attn.q_proj"]
    with torch.no_grad():
        engine(ids, ["e0", "e1", "e2", "e3"])
        first = engine.context.rows["*"]
        gathered = lay._folded[2]
        engine(_ids(rows=1, t=5), ["e1"])  # a prefill of a joining row, with weights of its own
        engine.set_rows(["e0", {"e3": 0.5, "e1": 1.0}, "e2", "e3"], like=first)  # mixtures: k changes
        assert engine.context.rows["*"].prev is None  # another shape: gathered again
        engine.set_rows(["e0", "e1", "e2", "e3"], like=first)
        assert engine.context.rows["*"] is first  # the same rows as ``like``: the same object
        got = engine.model(input_ids=ids).logits
        assert lay._folded[2] is gathered
        engine.set_rows(["e0", "e3", None, "e3"], like=first)
        w = engine.context.rows["*"]
        assert w.prev is first and w.changed.tolist() == [1, 2]
        got2 = engine.model(input_ids=ids).logits
        assert lay._folded[0] is w and lay._folded[2] is gathered  # updated in place, not gathered again
        ref = peft_oracle(input_ids=ids, adapter_names=["e0", "e1", "e2", "e3"]).logits
        ref2 = peft_oracle(input_ids=ids, adapter_names=["e0", "e3", "__base__", "e3"]).logits
    torch.testing.assert_close(got, ref, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(got2, ref2, atol=1e-5, rtol=1e-5)


def test_generate_from_text_prompts_returns_tokens_and_text(base_model, expert_dirs, peft_oracle, char_tokenizer):
    eng = MixedAdapterModel(copy.deepcopy(base_model), tokenizer=char_tokenizer)
    for i, d in enumerate(expert_dirs):
        eng.load_adapter(f"e{i}", d)
    prompts = ["abc=", "hello="]
    res = eng.generate(prompts=prompts, adapters=["e2", {"e0": 1.0}], max_new_tokens=4)
    enc = char_tokenizer(prompts, return_tensors="pt", padding=True)
    with torch.no_grad():
        ref = peft_oracle.generate(**enc, adapter_names=["e2", "e0"], max_new_tokens=4, do_sample=False,
                                   pad_token_id=0)
    new = ref[:, enc["input_ids"].shape[1]:].tolist()
    assert res.tokens == [row[:len(t)] for row, t in zip(new, res.tokens, strict=True)]
    assert res.text == char_tokenizer.batch_decode(res.tokens, skip_special_tokens=True)
    assert res.adapters == [{"e2": 1.0}, {"e0": 1.0}]
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        eng.generate(prompts=prompts, adapters=["e2", "e0"], max_new_tokens=0)
