"""Router presets in continuous batching (routing.routed_batch): rows joining at different steps give, token
for token, what each request gives alone through generate_routed; per-row state follows its row."""

from __future__ import annotations

import copy

import pytest
import torch

from routing import build_router
from routing.batching import generate_routed
from routing.continuous import ContinuousBatch, Row
from routing.routed_batch import BATCHED, RoutedRows

EOS = 2
#: (preset, config, experts used); gates read the site/block input, or the request embedding (features)
CASES = {
    "meteora": ("meteora", {"k": 2}),
    "meteora-features": ("meteora", {"k": 2, "features": "embedding", "embedding_dim": 4}),
    "mole_llava-attn": ("mole_llava", {"routed_attention": True}),
    "mole_wu": ("mole_wu", {"temperature": 0.2}),
    "mole_wu-features": ("mole_wu", {"features": "embedding", "embedding_dim": 4, "temperature": 0.2}),
    "smora": ("smora", {"k": 2}),
    "lora_mixer": ("lora_mixer", {}),
    "semantic": ("semantic", {"k": 2, "threshold": 0.5, "temperature": 0.5}),
}
#: (prompt ids, request text, max new tokens, the step the row joins at)
SPECS = [([1, 5, 9, 13, 17, 21, 25, 29], "alpha", 12, 0), ([1, 40, 41], "gamma", 7, 0),
         ([1, 7, 7, 30, 31, 50, 2 + 60, 3, 4, 5, 6], "beta", 10, 2), ([1, 33], "epsilon", 9, 4),
         ([1, 11, 12, 13, 14], "alpha beta", 6, 5)]
VECS = torch.eye(4)


def embed(texts):
    """Words -> a fixed 4-d vector (alpha, beta, gamma, delta: one axis each; other words add nothing)."""
    axes = {"alpha": 0, "beta": 1, "gamma": 2, "delta": 3}
    out = torch.zeros(len(texts), 4)
    for r, t in enumerate(texts):
        for w in t.split():
            if w in axes:
                out[r, axes[w]] += 1.0
    return out


def routed_for(case, base_model, experts):
    preset, cfg = CASES[case]
    torch.manual_seed(5)
    extras = {"adapter_vectors": VECS, "embed": embed} if preset == "semantic" else {}
    routed = build_router(copy.deepcopy(base_model), experts[:2] if preset == "smora" else experts, preset, cfg,
                          **extras)
    for g in routed.gates.values():  # non-trivial routing (a zero-initialised gate would pick expert 0 everywhere)
        if hasattr(g, "proj"):
            torch.nn.init.normal_(g.proj.weight, std=2.0)
    return routed


def alone(routed, prompt, text, n):
    """Today's one-request path (the oracle): RouterRunner's inputs + generate_routed."""
    if routed.router is not None:
        routed.router.apply(routed, [text])
    elif routed.needs_features:
        from routing.features import request_features

        routed.set_features(request_features(embed, [text], routed.config))
    x = torch.tensor([prompt])
    res = generate_routed(routed, x, torch.ones_like(x), max_new_tokens=n, eos_token_id=EOS)
    toks = [t for t in res.tokens[0] if t != EOS]
    return toks, res.adapters[0], res.gate_weights[0]


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.parametrize("compact_at", [0.25, 1.0])
def test_routed_rows_joining_at_different_steps_match_each_alone(case, compact_at, base_model, experts):
    """``compact_at=1.0``: rows that leave stay holes until the batch is empty; a late joiner comes at the first
    step after the others joined that finds a hole, and takes it."""
    specs = [*SPECS, ([1, 5, 9, 13, 17, 21, 25, 30], "alpha", 6, -1)]  # a prompt no preset ends at once
    routed = routed_for(case, base_model, experts)
    runner = RoutedRows(routed, embed)
    states = runner.inputs([s[1] for s in specs])
    rows = [Row(list(p), {}, n, stop_ids=frozenset({EOS}), state=st) for (p, _, n, _), st in zip(specs, states,
                                                                                                  strict=True)]
    batch = ContinuousBatch(runner, 0)
    batch.compact_at = compact_at
    sizes, step, filled, waiting = [], 0, 0, [rows[-1]]
    last = max(s[3] for s in specs)
    while batch.rows or step <= last:
        holes = len(batch.holes)
        late, waiting = (waiting, []) if step > last and holes else ([], waiting)
        batch.add([r for r, s in zip(rows, specs, strict=True) if s[3] == step] + late)
        filled += holes - len(batch.holes)
        sizes.append(len(batch.rows))
        batch.step()
        step += 1
    assert max(sizes) >= 3 and batch.cache is None  # routed rows shared forwards, then all left
    assert filled > 0 if compact_at == 1.0 else batch.compactions > 0
    seen_adapters = set()
    for r, (p, text, n, _) in zip(rows, specs, strict=True):
        toks, adapters, gates = alone(routed, p, text, n)
        assert r.tokens == toks, (case, text)
        got_adapters, got_gates = runner.report(r)
        assert got_gates.keys() == gates.keys()
        for site, w in gates.items():
            torch.testing.assert_close(torch.tensor(got_gates[site]), torch.tensor(w), atol=1e-5, rtol=1e-4)
        assert got_adapters.keys() == adapters.keys()
        torch.testing.assert_close(torch.tensor(list(got_adapters.values())), torch.tensor(list(adapters.values())),
                                   atol=1e-5, rtol=1e-4)
        seen_adapters.add(tuple(sorted(adapters)))
    if CASES[case][0] == "semantic":  # per-row mixtures really differ (one row routes to the base model)
        assert () in seen_adapters and len(seen_adapters) >= 3


def test_sequence_gate_weights_follow_their_row_through_joins_and_leaves(base_model, experts):
    """Wu MoLE computes one weight vector per row at its prefill; after a row leaves and others join, each row
    still decodes with its own vector (a mix-up would change the tokens, see the oracle test)."""
    routed = routed_for("mole_wu", base_model, experts)
    runner = RoutedRows(routed)
    a, b = (Row([1, 5, 9, 13, 17], {}, 2, state={}), Row([1, 40, 41, 42], {}, 8, state={}))
    batch = ContinuousBatch(runner, 0)
    batch.add([a, b])
    wa, wb = (r.state["sequence"] for r in (a, b))
    assert wa.keys() == wb.keys() and len(wa) == 2  # one per decoder block
    key = next(iter(wa))
    assert not torch.equal(wa[key].val, wb[key].val)
    batch.step()
    batch.step()  # a finished (2 tokens) and left
    c = Row([1, 33, 34], {}, 4, state={})
    batch.add([c])
    batch.step()
    assert batch.rows == [b, c]
    seq = routed.context.sequence_rows[key]
    torch.testing.assert_close(seq.val, torch.cat([wb[key].val, c.state["sequence"][key].val]))


def test_every_registered_preset_is_batched_and_has_an_oracle_case():
    from routing.presets import ROUTERS

    assert set(ROUTERS.names()) == BATCHED == {preset for preset, _ in CASES.values()}
