"""Hand-checked numeric references per preset (spec §2(g), §3A(g), §3B(g), §4(h), §5(h), §8)."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError
from routing import build_router
from routing.gates import GateSpec, TokenGate
from routing.routers import lora_mixer
from tests.helpers import peft_logits


def merged(base_model, adapter: LoraAdapter, weight: float = 1.0, only: tuple[str, ...] | None = None):
    """Oracle: a copy of the base with ``weight * s B A`` added to each adapted weight (hand-written)."""
    m = copy.deepcopy(base_model)
    with torch.no_grad():
        for site, la in adapter.layers.items():
            if only is None or site.rsplit(".", 1)[-1] in only:
                m.get_submodule(site).weight += weight * la.delta()
    return m


def logits(model, ids, am=None):
    with torch.no_grad():
        return model(input_ids=ids, attention_mask=am).logits


# -- MeteoRA ---------------------------------------------------------------------------------------
def test_meteora_temperature_paths_and_k1():
    torch.manual_seed(0)
    u = torch.randn(50, 8)
    gates = {t: TokenGate(8, 5, GateSpec(k=2, temperature=t)) for t in (1.0, 2.0, 15.0, 1e6)}
    for g in gates.values():
        g.proj.load_state_dict(gates[1.0].proj.state_dict())
    ents = []
    for _, g in sorted(gates.items()):
        w = g(u).weights.val
        ents.append(-(w * w.clamp_min(1e-30).log()).sum(-1))
    for lo, hi in zip(ents, ents[1:], strict=False):
        assert bool((hi >= lo - 1e-6).all())
    torch.testing.assert_close(gates[1e6](u).weights.val, torch.full((50, 2), 0.5), atol=1e-4, rtol=0)
    rec = gates[1.0](u)  # T=1: softmax over top-k logits == full softmax, top-k, renormalise
    p = torch.softmax(rec.logits, -1)
    top, _ = p.topk(2, -1)
    torch.testing.assert_close(rec.weights.val, top / top.sum(-1, keepdim=True), atol=1e-6, rtol=0)
    g1 = TokenGate(8, 5, GateSpec(k=1, temperature=30.0))
    assert torch.equal(g1(u).weights.val, torch.ones(50, 1))


def test_meteora_sum_to_k_with_equal_logits_is_the_sum_of_the_chosen_experts(model, base_model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts, "meteora", {"k": 2, "sum_to_k": True, "temperature": 30.0})
    for g in routed.gates.values():
        g.force(torch.tensor([-9.0, 4.0, -9.0, 4.0]))  # experts 1 and 3 tie: weight 1 each
    ref = merged(merged(base_model, experts[1]), experts[3])
    torch.testing.assert_close(logits(routed, ids, am), logits(ref, ids, am), atol=1e-5, rtol=1e-5)
    rec = TokenGate(3, 4, GateSpec(k=2, weights="sum_to_k", temperature=2.0))(torch.randn(5, 3))
    torch.testing.assert_close(rec.weights.val.sum(-1), torch.full((5,), 2.0))  # k * softmax(top-k / T)
    plain = build_router(copy.deepcopy(base_model), experts, "meteora", {"k": 2, "temperature": 30.0})
    for g in plain.gates.values():
        g.force(torch.tensor([-9.0, 4.0, -9.0, 4.0]))  # the paper's weights: half of each
    half = merged(merged(base_model, experts[1], 0.5), experts[3], 0.5)
    torch.testing.assert_close(logits(plain, ids, am), logits(half, ids, am), atol=1e-5, rtol=1e-5)
    sure = build_router(copy.deepcopy(base_model), experts, "meteora",
                        {"k": 3, "sum_to_k": True, "temperature": 30.0, "min_prob": 0.25})
    for g in sure.gates.values():
        g.force(torch.tensor([6.0, 0.0, 0.0, -9.0]))  # one expert asked for: min_prob keeps it alone, at weight 1
    torch.testing.assert_close(logits(sure, ids, am), logits(merged(base_model, experts[0]), ids, am),
                               atol=1e-5, rtol=1e-5)


def test_meteora_min_prob_keeps_one_expert_for_a_sure_gate_and_several_for_an_unsure_one():
    g = TokenGate(3, 4, GateSpec(k=3, weights="sum_to_k", temperature=30.0, min_prob=0.25))
    for logits, kept in (([5.0, 0.0, 0.0, 0.0], [0]), ([3.0, 3.0, 0.0, -1.0], [0, 1]), ([2.0, 2.0, 2.0, -9.0], [0, 1, 2])):
        g.force(torch.tensor(logits))
        w = g(torch.zeros(2, 3)).weights.dense(4)
        want = torch.zeros(4)
        want[kept] = 1.0  # each kept expert at (about) full strength, the rest exactly 0
        torch.testing.assert_close(w, want.expand(2, 4), atol=2e-2, rtol=0)
        assert bool((w[:, [i for i in range(4) if i not in kept]] == 0).all())
    soft = TokenGate(3, 4, GateSpec(k=2, temperature=1.0, min_prob=0.25))
    soft.force(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    torch.testing.assert_close(soft(torch.zeros(1, 3)).weights.dense(4), torch.tensor([[1.0, 0.0, 0.0, 0.0]]))
    with pytest.raises(InvalidInputError, match="min_prob"):
        GateSpec(min_prob=1.0)
    with pytest.raises(InvalidInputError, match="min_prob"):
        GateSpec(weights="unit", min_prob=0.2)


def test_meteora_multi_label_switches_on_every_expert_scoring_over_half(model, base_model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts, "meteora", {"k": 3, "multi_label": True})
    sig = torch.sigmoid(torch.tensor([5.0, 4.0]))
    for g in routed.gates.values():
        g.force(torch.tensor([5.0, 4.0, -5.0, -6.0]))  # two tasks asked for: sigmoid 0.99 and 0.98, the rest < 0.01
    w = 2 * sig / sig.sum()  # each at (about) full strength, adding up to the number kept
    ref = merged(merged(base_model, experts[0], float(w[0])), experts[1], float(w[1]))
    torch.testing.assert_close(logits(routed, ids, am), logits(ref, ids, am), atol=1e-5, rtol=1e-5)
    for g in routed.gates.values():
        g.force(torch.tensor([-4.0, 3.0, -5.0, -6.0]))  # one task: one expert, weight 1
    torch.testing.assert_close(logits(routed, ids, am), logits(merged(base_model, experts[1]), ids, am),
                               atol=1e-5, rtol=1e-5)
    # its gate loss is the binary CE (not the softmax CE) of the learned logits to the example's expert
    from routing import losses
    from routing.routers import meteora

    for g in routed.gates.values():
        g.force(None)
    routed.context.collect = True
    routed.context.clear_records()
    logits(routed, ids, am)
    task_ids = torch.tensor([2, 0])
    labels = losses.token_labels(task_ids, ids.shape[1])
    want = routed.config.ce_coef * losses.supervised_bce(routed.context.records, labels, routed.context.token_mask)
    got = meteora.aux_loss(routed, task_ids)
    torch.testing.assert_close(got, want)
    assert not torch.isclose(got, routed.config.ce_coef * losses.supervised_ce(
        routed.context.records, labels, routed.context.token_mask))


# -- LLaVA-MoLE ------------------------------------------------------------------------------------
def test_mole_llava_router_bias_one_hot_equals_the_expert_mlp_triple(model, base_model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts, "mole_llava", {})
    mlp_gates = [g for k, g in routed.gates.items() if k.endswith("mlp")]
    assert len(mlp_gates) == 2 and len(routed.gates) == 2  # one router per layer, no attention LoRA
    for e in (1, 3):
        with torch.no_grad():
            for g in mlp_gates:
                g.proj.bias.zero_()
                g.proj.bias[e] = 1e4
        ref = logits(merged(base_model, experts[e], only=("gate_proj", "up_proj", "down_proj")), ids, am)
        torch.testing.assert_close(logits(routed, ids, am), ref, atol=1e-5, rtol=1e-5)
    dense = build_router(copy.deepcopy(base_model), experts, "mole_llava", {"dense": True})
    for name, g in dense.gates.items():
        g.load_state_dict(routed.gates[name].state_dict())
    torch.testing.assert_close(logits(dense, ids, am), logits(routed, ids, am), atol=1e-5, rtol=1e-5)


def test_mole_llava_routed_attention_one_hot_equals_the_whole_expert(model, base_model, experts, expert_dirs,
                                                                    batch):
    ids, am = batch
    routed = build_router(model, experts, "mole_llava", {"routed_attention": True})
    assert len(routed.gates) == 2 and all(not k.endswith("mlp") for k in routed.gates)  # one router per layer
    assert any(s.endswith(("q_proj", "v_proj")) for s in routed.layers)
    for e in (0, 2):
        with torch.no_grad():
            for g in routed.gates.values():
                g.proj.bias.zero_()
                g.proj.bias[e] = 1e4
        torch.testing.assert_close(logits(routed, ids, am), logits(merged(base_model, experts[e]), ids, am),
                                   atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(logits(routed, ids), peft_logits(base_model, expert_dirs[e], ids),
                                   atol=1e-4, rtol=1e-4)
    with pytest.raises(InvalidInputError, match="attention_expert"):
        build_router(copy.deepcopy(base_model), experts, "mole_llava", {"routed_attention": True,
                                                                         "attention_expert": 0})


@pytest.mark.parametrize("st", [False, True])
def test_mole_llava_router_gradient_only_with_straight_through(model, experts, batch, st):
    ids, am = batch
    routed = build_router(model, experts, "mole_llava", {"straight_through": st, "balance_coef": 0.0})
    assert all(p.requires_grad for g in routed.gates.values() for p in g.parameters())
    loss = routed(input_ids=ids, attention_mask=am, labels=ids).loss
    if not st:  # unit weights of a hard top-1: the LM loss has no path to the router at all
        assert not loss.requires_grad
        return
    loss.backward()
    assert all(g.proj.weight.grad is not None and g.proj.weight.grad.abs().sum() > 0 for g in routed.gates.values())
    assert all(p.grad is None for p in model.parameters())


# -- Wu MoLE ---------------------------------------------------------------------------------------
def test_mole_wu_one_hot_and_mask_renormalisation(model, base_model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts, "mole_wu", {})
    for g in routed.gates.values():
        g.force(torch.tensor([-30.0, -30.0, 30.0, -30.0]))
    torch.testing.assert_close(logits(routed, ids, am), logits(merged(base_model, experts[2]), ids, am),
                               atol=1e-5, rtol=1e-5)
    masked = build_router(copy.deepcopy(base_model), experts, "mole_wu", {"mask": [0, 3]})
    masked.context.collect = True
    logits(masked, ids, am)
    for recs in masked.context.records.values():
        g, w = recs[0].probs, recs[0].weights.val
        m = torch.tensor([1.0, 0.0, 0.0, 1.0])
        torch.testing.assert_close(w, g * m / (g * m).sum(-1, keepdim=True))
        torch.testing.assert_close(w.sum(-1), torch.ones(2))


# -- SMoRA -----------------------------------------------------------------------------------------
def test_smora_uniform_scores_with_k_equal_r_is_the_standard_lora(model, base_model, experts, expert_dirs, batch):
    ids, _ = batch
    routed = build_router(model, [experts[0]], "smora", {"k": 4})
    with torch.no_grad():
        for g in routed.gates.values():
            g.proj.weight.zero_()
    torch.testing.assert_close(logits(routed, ids), peft_logits(base_model, expert_dirs[0], ids),
                               atol=1e-5, rtol=1e-5)


def test_smora_fixed_subset_is_a_rank_k_lora_with_alpha_over_k(model, base_model, experts, batch):
    ids, _ = batch
    keep = [0, 2]
    routed = build_router(model, [experts[0]], "smora", {"k": 2})
    with torch.no_grad():
        for g in routed.gates.values():
            g.proj.weight.zero_()
            g.beta[keep] = 0.1  # selection bias picks S = {0, 2}; equal scores -> g_j = 1
    sub = LoraAdapter({m: type(la)(la.a[keep], la.b[:, keep], la.alpha) for m, la in experts[0].layers.items()},
                      experts[0].spec)  # rank 2, scale alpha / 2 = alpha / k
    torch.testing.assert_close(logits(routed, ids), logits(merged(base_model, sub), ids), atol=1e-5, rtol=1e-5)


def test_smora_bias_rule_once_per_micro_step_and_never_in_eval(model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts[:2], "smora", {"k": 2, "bias_rate": 0.01})
    gate = next(iter(routed.gates.values()))
    model.train()
    routed(input_ids=ids, attention_mask=am)
    routed(input_ids=ids, attention_mask=am)  # a re-forward (activation checkpointing) adds load only
    load = gate.load.clone()
    routed.update_balance_bias()
    expected = 0.01 * torch.sign(load.mean() - load)
    torch.testing.assert_close(gate.beta, expected)
    assert gate.beta.abs().max() <= 0.01 + 1e-7 and gate.beta.abs().sum() > 0  # +-u, not 2u
    model.eval()
    before = gate.beta.clone()
    routed(input_ids=ids, attention_mask=am)
    routed.update_balance_bias()
    assert torch.equal(gate.beta, before)
    assert all(not p.requires_grad for n, p in gate.named_buffers())


# -- LoRA-Mixer ------------------------------------------------------------------------------------
def test_lora_mixer_routes_attention_projections_only(model, experts):
    routed = build_router(model, experts, "lora_mixer", {})
    assert routed.layers and all(s.rsplit(".", 1)[-1] in ("q_proj", "k_proj", "v_proj", "o_proj")
                                 for s in routed.layers)
    assert any(s.endswith("mlp.down_proj") for s in routed.dropped)
    assert all(type(model.get_submodule(f"model.layers.{i}.mlp.up_proj")) is torch.nn.Linear for i in (0, 1))


@pytest.mark.parametrize("st", [False, True])
def test_lora_mixer_straight_through_reaches_unselected_logits(model, experts, batch, st):
    ids, am = batch
    routed = build_router(model, experts, "lora_mixer", {"k": 2, "straight_through": st})
    routed.context.collect = True
    out = routed(input_ids=ids, attention_mask=am, labels=ids)
    recs = [r for rs in routed.context.records.values() for r in rs]
    for r in recs:
        r.logits.retain_grad()
    out.loss.backward()
    r = recs[0]
    sel = r.logits.detach().topk(2, -1).indices
    unselected = torch.ones_like(r.logits, dtype=torch.bool).scatter(1, sel, False)
    g_sel, g_un = r.logits.grad[~unselected].abs().max(), r.logits.grad[unselected].abs().max()
    assert g_sel > 1e-6  # renorm: only the selected logits learn (the rest is float round-off)
    assert (g_un > 1e-3 * g_sel) == st


def test_lora_mixer_entropy_sign_is_a_setting(model, base_model, experts, batch):
    ids, am = batch
    vals = {}
    for sign in (1.0, -1.0):
        torch.manual_seed(0)
        routed = build_router(copy.deepcopy(base_model), experts, "lora_mixer",
                              {"balance_coef": 0.0, "entropy_coef": sign * 0.5})
        routed.context.collect = True
        with torch.no_grad():
            routed(input_ids=ids, attention_mask=am)
        vals[sign] = float(lora_mixer.aux_loss(routed, None))
    assert vals[1.0] > 0 and math.isclose(vals[1.0], -vals[-1.0], rel_tol=1e-5)


# -- semantic --------------------------------------------------------------------------------------
def test_semantic_threshold_falls_back_to_base_and_top1_is_the_adapter(model, base_model, experts,
                                                                         expert_dirs, batch):
    ids, am = batch
    vecs = torch.eye(4, 5)

    def embed(texts):
        table = {"upper": vecs[1], "rot": vecs[3]}
        return torch.stack([table.get(t, torch.tensor([0.0, 0, 0, 0, 1])) for t in texts])

    routed = build_router(model, experts, "semantic", {"k": 1, "threshold": 0.5},
                          adapter_vectors=vecs, embed=embed)
    decisions = routed.router.apply(routed, ["weather", "weather"])
    assert all(d.base for d in decisions)
    assert torch.equal(logits(routed, ids, am), logits(base_model, ids, am))
    decisions = routed.router.apply(routed, ["upper", "rot"])
    assert [d.indices for d in decisions] == [(1,), (3,)] and [d.weights for d in decisions] == [(1.0,), (1.0,)]
    assert decisions[1].mixture(["a", "b", "c", "d"]) == {"d": 1.0}
    out = logits(routed, ids)
    torch.testing.assert_close(out[0], peft_logits(base_model, expert_dirs[1], ids[:1])[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(out[1], peft_logits(base_model, expert_dirs[3], ids[1:])[0], atol=1e-5, rtol=0)


def test_semantic_exemplars_nearest_and_lexical_words(model, experts):
    """Adapters represented by their sample prompts: the best single exemplar counts (``nearest``), and the
    hashed words tell apart requests a sentence embedding cannot (here: an embedding that is the same for all)."""
    flat = lambda texts: torch.ones(len(texts), 8)  # noqa: E731 - every text embeds alike
    exemplars = [["hello | caesar shift by 2"], ["hi | caesar shift by 4"], ["x | mirror it"], ["y | shout"]]
    with pytest.raises(InvalidInputError, match="nearest"):
        build_router(copy.deepcopy(model), experts, "semantic", {"nearest": 0.5}, embed=flat,
                     adapter_vectors=torch.eye(4, 8))
    plain = build_router(copy.deepcopy(model), experts, "semantic", {"embedding_dim": 8, "threshold": -1.0},
                         embed=flat, exemplars=exemplars)
    scores = plain.router.route(["abc | caesar shift by 4"])[0].scores
    assert max(scores) - min(scores) < 1e-6  # embedding only: no way to tell the four apart
    lex = build_router(copy.deepcopy(model), experts, "semantic",
                       {"embedding_dim": 8, "features": "embedding", "lexical_dim": 256, "threshold": -1.0},
                       embed=flat, exemplars=exemplars)
    assert [d.indices for d in lex.router.route(["abc | caesar shift by 4", "q | caesar shift by 2",
                                                 "zz | shout"])] == [(1,), (0,), (3,)]
    # nearest: adapter 0 has one exemplar phrased like the request among many that are not; its mean loses,
    # its best exemplar wins
    many = [["a | caesar shift by 2"] + [f"b{i} | rotate letters" for i in range(6)], ["c | shift by 2 please"],
            ["x | mirror it"], ["y | shout"]]
    cfg = {"embedding_dim": 8, "features": "embedding", "lexical_dim": 256, "threshold": -1.0}
    mean_only = build_router(copy.deepcopy(model), experts, "semantic", cfg, embed=flat, exemplars=many)
    assert mean_only.router.route(["z | caesar shift by 2"])[0].indices == (1,)
    best = build_router(copy.deepcopy(model), experts, "semantic", {**cfg, "nearest": 0.5}, embed=flat,
                        exemplars=many)
    assert best.router.route(["z | caesar shift by 2"])[0].indices == (0,)
    with pytest.raises(InvalidInputError, match="exemplar"):
        build_router(copy.deepcopy(model), experts, "semantic", cfg, embed=flat, exemplars=many[:3])
