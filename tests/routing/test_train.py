"""train_router as a pure function; router checkpoints (spec §7.6, §7.7; T6, T18)."""

from __future__ import annotations

import copy
import json

import pytest
import torch

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from routing import build_router
from routing.checkpoint import RouterState, load_router, save_router
from routing.train import TrainConfig, collate, gate_accuracy, train_router

NAMES = ["ns/e0", "ns/e1", "ns/e2", "ns/e3"]
ALPHABETS = ["abcdef", "ghijkl", "mnopqr", "stuvwx"]


def encode(text: str) -> list[int]:
    return [3 + (ord(c) - ord("a")) % 60 for c in text]


def sample_data(n_per: int = 6) -> list[list[dict[str, str]]]:
    g = torch.Generator().manual_seed(0)
    data = []
    for alpha in ALPHABETS:
        rows = []
        for _ in range(n_per):
            s = "".join(alpha[int(i)] for i in torch.randint(0, 6, (5,), generator=g))
            rows.append({"input": s + "=", "output": s[::-1]})
        data.append(rows)
    return data


def test_meteora_gate_training_learns_the_task_labels(model, base_model, experts):
    data = sample_data()
    seen = []
    tc = TrainConfig(steps=25, lr=3e-2, batch_size=8)
    batch = collate([(encode(e["input"] + e["output"]), [], i) for i, rows in enumerate(data) for e in rows])
    torch.manual_seed(0)
    before = gate_accuracy(build_router(copy.deepcopy(base_model), experts, "meteora", {"k": 2}), batch)
    state = train_router(model, experts, "meteora", {"k": 2}, examples=data, tokenizer=encode, names=NAMES,
                         train=tc, progress=seen.append)
    assert [s["step"] for s in seen] == list(range(1, 26))
    assert seen[-1]["aux"] < 0.5 * seen[0]["aux"]
    assert state.expert_ids == NAMES and state.preset == "meteora"
    assert not any(type(m).__name__ == "RoutedLoRALinear" for m in model.modules())  # model restored
    routed = load_router(model, experts, state, names=NAMES)
    after = gate_accuracy(routed, batch)
    assert after > 0.7 and after > before + 0.3, (before, after)


def test_router_only_training_leaves_base_and_experts_without_grads(model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts, "meteora", {"trainable": "gate"})
    loss = routed(input_ids=ids, attention_mask=am, labels=ids).loss
    loss.backward()
    assert all(p.grad is None for p in model.parameters() if p not in set(routed.parameters("gate")))
    assert all(lay.bank.a.grad is None and lay.bank.bt.grad is None for lay in routed.layers.values())
    assert all(g.proj.weight.grad is not None and g.proj.weight.grad.abs().sum() > 0 for g in routed.gates.values())


def test_joint_training_gives_unselected_experts_zero_grad(model, experts, batch):
    ids, am = batch
    routed = build_router(model, experts, "meteora", {"k": 1, "trainable": "gate+experts", "backend": "gather"})
    for g in routed.gates.values():
        g.force(torch.tensor([5.0, 0.0, 0.0, 0.0]))
    routed(input_ids=ids, attention_mask=am, labels=ids).loss.backward()
    for lay in routed.layers.values():
        assert torch.count_nonzero(lay.bank.a.grad[1:]) == 0
    assert any(torch.count_nonzero(lay.bank.a.grad[0]) > 0 for lay in routed.layers.values())


VARIANTS = {"smora": {"k": 3}, "mole_llava+attn": {"routed_attention": True},
            "meteora+multi": {"k": 3, "sum_to_k": True, "min_prob": 0.2, "temperature": 15.0},
            "meteora+labels": {"k": 3, "multi_label": True}}


@pytest.mark.parametrize("variant", ["meteora", "meteora+multi", "meteora+labels", "mole_llava", "mole_llava+attn", "mole_wu", "smora",
                                     "lora_mixer"])
def test_every_trainable_preset_trains_and_round_trips(variant, model, base_model, experts, batch, tmp_path):
    ids, am = batch
    preset, cfg = variant.split("+")[0], VARIANTS.get(variant, {})
    state = train_router(model, experts, preset, cfg, examples=sample_data(2), tokenizer=encode, names=NAMES,
                         train=TrainConfig(steps=2, batch_size=4))
    assert all(torch.isfinite(t).all() for t in state.tensors.values())
    folder = state.save(tmp_path / "r")
    assert sorted(p.name for p in folder.iterdir()) == ["router.json", "router.safetensors"]
    a = load_router(copy.deepcopy(base_model), experts, state, names=NAMES)
    b = load_router(copy.deepcopy(base_model), experts, folder, names=NAMES)
    with torch.no_grad():
        la, lb = a(input_ids=ids, attention_mask=am).logits, b(input_ids=ids, attention_mask=am).logits
    assert torch.equal(la, lb)
    fresh = build_router(copy.deepcopy(base_model), experts, preset, cfg, names=NAMES)
    with torch.no_grad():
        assert not torch.equal(fresh(input_ids=ids, attention_mask=am).logits, la)
    if preset == "smora":  # experts were trained too: the bank is in the checkpoint
        assert any(k.startswith("bank.") for k in state.tensors)


def test_loading_refuses_another_adapter_set_order_base_or_changed_weights(model, experts, tmp_path):
    routed = build_router(model, experts, "meteora", {}, names=NAMES)
    folder = save_router(routed, tmp_path / "r", experts)
    routed.remove()
    man = json.loads((folder / "router.json").read_text())
    assert man["expert_ids"] == NAMES and man["preset"] == "meteora" and man["base_model"]
    with pytest.raises(IncompatibleAdaptersError, match="in this order"):
        load_router(model, [experts[i] for i in (1, 0, 2, 3)], folder, names=[NAMES[i] for i in (1, 0, 2, 3)])
    with pytest.raises(IncompatibleAdaptersError, match="in this order"):
        load_router(model, experts[:3], folder, names=NAMES[:3])
    changed = list(experts)
    changed[2] = experts[2].to(dtype=torch.float64).to(dtype=torch.float32).with_spec(use_rslora=False)
    changed[2] = type(experts[2])({m: type(la)(la.a * 2, la.b, la.alpha) for m, la in experts[2].layers.items()},
                                  experts[2].spec)
    with pytest.raises(IncompatibleAdaptersError, match="changed"):
        load_router(model, changed, folder, names=NAMES)
    state = RouterState.load(folder)
    state.base_model = "other/base"
    with pytest.raises(IncompatibleAdaptersError, match="other/base"):
        load_router(model, experts, state, names=NAMES)
    (folder / "router.json").write_text("{not json")
    with pytest.raises(InvalidInputError):
        RouterState.load(folder)


def test_bad_training_input_is_a_domain_error(model, experts):
    with pytest.raises(InvalidInputError, match="one list of examples per expert"):
        train_router(model, experts, "meteora", examples=sample_data()[:2], tokenizer=encode)
    with pytest.raises(InvalidInputError, match="must be"):
        train_router(model, experts, "meteora", examples=[[{"input": 1}]] * 4, tokenizer=encode)
    with pytest.raises(InvalidInputError, match="training-free"):
        train_router(model, experts, "semantic", examples=sample_data(), tokenizer=encode)
    with pytest.raises(InvalidInputError, match="steps"):
        TrainConfig(steps=0)


def onehot_embed(texts: list[str]) -> torch.Tensor:
    """A request embedder for the tests: one-hot of the alphabet the text is written in (4 dims)."""
    out = torch.zeros(len(texts), 4)
    for r, t in enumerate(texts):
        out[r, next(i for i, a in enumerate(ALPHABETS) if t[0] in a)] = 1.0
    return out


def test_embedding_features_route_every_token_by_the_request(model, base_model, experts):
    """features="embedding": the gates read the request embedding, so even a prompt's FIRST token (which
    carries no task cue in its own hidden state) is routed to the right expert."""
    data = sample_data()
    cfg = {"k": 1, "features": "embedding", "embedding_dim": 4}
    state = train_router(model, experts, "meteora", cfg, examples=data, tokenizer=encode, names=NAMES,
                         train=TrainConfig(steps=30, lr=5e-2, batch_size=8), embed=onehot_embed)
    routed = load_router(model, experts, state, names=NAMES)
    assert routed.needs_features and all(g.proj.in_features == 4 for g in routed.gates.values())
    texts = [e["input"] for rows in data for e in rows]
    batch = collate([(encode(e["input"] + e["output"]), [], i) for i, rows in enumerate(data) for e in rows])
    routed.set_features(onehot_embed(texts))
    assert gate_accuracy(routed, batch) > 0.95
    routed.set_features(onehot_embed(texts))
    routed.context.collect = True
    with torch.no_grad():
        routed(input_ids=batch["input_ids"][:, :1], attention_mask=batch["attention_mask"][:, :1])
    first = next(iter(routed.context.records.values()))[-1].weights.idx[:, 0]
    assert torch.equal(first, batch["task_ids"])  # one token in: already the right expert
    routed.context.collect = False
    routed.set_features(None)
    with pytest.raises(InvalidInputError, match="set_features"):
        routed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    with pytest.raises(InvalidInputError, match="4 columns"):
        routed.set_features(torch.zeros(2, 3))


@pytest.mark.parametrize("preset", ["mole_llava", "mole_wu", "smora", "lora_mixer"])
def test_every_trainable_preset_accepts_embedding_features(preset, model, base_model, experts, batch):
    ids, am = batch
    cfg = {"features": "embedding", "embedding_dim": 4, **({"k": 3} if preset == "smora" else {})}
    state = train_router(model, experts, preset, cfg, examples=sample_data(2), tokenizer=encode, names=NAMES,
                         train=TrainConfig(steps=2, batch_size=4), embed=onehot_embed)
    routed = load_router(copy.deepcopy(base_model), experts, state, names=NAMES)
    assert routed.needs_features
    outs = []
    for alpha in (0, 3):  # the same tokens under two different request embeddings route differently
        routed.set_features(torch.nn.functional.one_hot(torch.tensor([alpha, alpha]), 4).float())
        with torch.no_grad():
            outs.append(routed(input_ids=ids, attention_mask=am).logits)
    assert not torch.equal(outs[0], outs[1])


def test_embedding_features_need_an_embed_function_of_the_right_width(model, experts):
    with pytest.raises(InvalidInputError, match="embed function"):
        train_router(model, experts, "meteora", {"features": "embedding", "embedding_dim": 4},
                     examples=sample_data(1), tokenizer=encode)
    with pytest.raises(InvalidInputError, match="embedding_dim=8"):
        train_router(model, experts, "meteora", {"features": "embedding", "embedding_dim": 8},
                     examples=sample_data(1), tokenizer=encode, embed=onehot_embed)
    with pytest.raises(InvalidInputError, match="features must be one of"):
        build_router(model, experts, "meteora", {"features": "pixels"})


def test_lexical_features_are_stateless_normalised_and_keep_numbers_apart():
    from routing.features import lexical_features

    texts = ["abc | caesar shift by 2", "abc | caesar shift by 4", "xyz | caesar shift by 2", ""]
    a, b = lexical_features(texts, 256), lexical_features(texts, 256)
    assert a.shape == (4, 256) and a.dtype == torch.float32 and torch.equal(a, b)  # same buckets every call
    assert torch.allclose(a[:3].norm(dim=1), torch.ones(3)) and not a[3].any()
    assert float(a[0] @ a[1]) < 0.8  # one number apart ("2" and "by 2" differ) ...
    assert float(a[0] @ a[2]) < float(a[0] @ a[1]) + 0.2  # ... about as far apart as a different input


def test_lexical_features_route_requests_that_the_embedding_cannot_tell_apart(model, base_model, experts):
    """lexical_dim: the hashed words of the request are appended to its embedding. With an embedding that
    is the same for every request, only the words (one number apart) can tell the experts apart."""
    from routing.features import request_features

    g = torch.Generator().manual_seed(1)
    data = [[{"input": f"{''.join(ALPHABETS[0][int(j)] for j in torch.randint(0, 6, (4,), generator=g))} "
                       f"shift by {i}=", "output": "x"} for _ in range(8)] for i in range(4)]
    texts = [e["input"] for rows in data for e in rows]
    batch = collate([(encode(e["input"] + e["output"]), [], i) for i, rows in enumerate(data) for e in rows])

    def blind(t):
        return torch.ones(len(t), 4) / 2.0

    acc = {}
    for lex in (0, 64):
        cfg = {"k": 1, "features": "embedding", "embedding_dim": 4, "lexical_dim": lex}
        torch.manual_seed(0)
        state = train_router(model, experts, "meteora", cfg, examples=data, tokenizer=encode, names=NAMES,
                             train=TrainConfig(steps=40, lr=5e-2, batch_size=8), embed=blind)
        routed = load_router(copy.deepcopy(base_model), experts, state, names=NAMES)
        assert all(gate.proj.in_features == 4 + lex for gate in routed.gates.values())
        routed.set_features(request_features(blind, texts, routed.config))
        acc[lex] = gate_accuracy(routed, batch)
    assert acc[64] > 0.95 and acc[0] < 0.5, acc
    with pytest.raises(InvalidInputError, match="68 columns"):
        routed.set_features(torch.zeros(1, 4))
    with pytest.raises(InvalidInputError, match="lexical_dim must be >= 0"):
        build_router(model, experts, "meteora", {"features": "embedding", "lexical_dim": -1})
    with pytest.raises(InvalidInputError, match="needs features='embedding'"):
        build_router(model, experts, "meteora", {"lexical_dim": 64})


@pytest.mark.parametrize("preset", ["mole_wu", "smora", "lora_mixer"])
def test_task_ce_teaches_label_free_presets_the_experts(preset, model, base_model, experts):
    """task_ce: the supervised gate CE (free labels: each expert's own samples) works for row-level gates
    (Wu), rank groups (SMoRA, pooled per expert) and token gates alike; with task_ce=0 it is not there."""
    from routing import losses

    data = sample_data()
    cfg = {"features": "embedding", "embedding_dim": 4, **({"k": 4, "trainable": "gate"} if preset == "smora" else {})}
    texts = [e["input"] for rows in data for e in rows]
    batch = collate([(encode(e["input"] + e["output"]), [], i) for i, rows in enumerate(data) for e in rows])
    ce = {}
    for coef in (0.0, 1.0):
        state = train_router(model, experts, preset, {**cfg, "task_ce": coef}, examples=data, tokenizer=encode,
                             names=NAMES, train=TrainConfig(steps=40, lr=1e-1, batch_size=8), embed=onehot_embed)
        routed = load_router(copy.deepcopy(base_model), experts, state, names=NAMES)
        routed.set_features(onehot_embed(texts))
        routed.context.collect = True
        with torch.no_grad():
            routed(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        ce[coef] = float(losses.expert_ce(routed.context.records, batch["task_ids"], 4, routed.context.token_mask))
    assert ce[1.0] < 0.5 < ce[0.0], ce  # log(4) = 1.39 at chance


def alphabet_bag(texts: list[str]) -> torch.Tensor:
    """A request embedder for the tests: the L2-normalised share of each alphabet's letters in the text, so a
    request written in two alphabets (two tasks asked for) sits between the two one-task requests."""
    out = torch.zeros(len(texts), 4)
    for r, t in enumerate(texts):
        for c in t:
            hit = [i for i, a in enumerate(ALPHABETS) if c in a]
            if hit:
                out[r, hit[0]] += 1.0
    return torch.nn.functional.normalize(out, dim=1)


def test_mix_intents_teaches_multi_label_gates_to_switch_on_both_tasks_of_a_joined_request(model, base_model,
                                                                                          experts):
    """MeteoRA ``mix_intents``: the experts' data name one task per prompt; joined pairs of prompts labelled
    with both experts teach the sigmoid gates that two tasks' words mean two experts, while a one-task request
    still switches on one."""
    from routing.features import request_features

    data = sample_data()
    singles = [e["input"] for rows in data for e in rows]
    pairs = [(a, b) for a in range(4) for b in range(4) if a != b]
    joined = [f"{data[a][0]['input']} {data[b][1]['input']}" for a, b in pairs]
    kept = {}
    for mix in (0.0, 0.5):
        cfg = {"k": 2, "multi_label": True, "features": "embedding", "embedding_dim": 4, "mix_intents": mix}
        torch.manual_seed(0)
        state = train_router(model, experts, "meteora", cfg, examples=data, tokenizer=encode, names=NAMES,
                             train=TrainConfig(steps=150, lr=5e-2, batch_size=8), embed=alphabet_bag)
        assert state.config["mix_intents"] == mix
        routed = load_router(copy.deepcopy(base_model), experts, state, names=NAMES)
        gate = next(iter(routed.gates.values()))
        with torch.no_grad():
            on = torch.sigmoid(gate.proj(request_features(alphabet_bag, singles + joined, routed.config))) >= 0.5
        one, two = on[: len(singles)], on[len(singles):]
        want_one = torch.nn.functional.one_hot(torch.arange(4).repeat_interleave(6), 4).bool()
        want_two = torch.zeros(len(pairs), 4, dtype=torch.bool)
        for r, (a, b) in enumerate(pairs):
            want_two[r, [a, b]] = True
        assert torch.equal(one, want_one)  # one-task requests: exactly their expert, with or without mixing
        kept[mix] = int((two == want_two).all(1).sum())
    assert kept[0.5] == len(pairs) and kept[0.0] < len(pairs), kept


def test_mix_intents_needs_multi_label_gates_on_request_features(model, experts):
    with pytest.raises(InvalidInputError, match="mix_intents trains multi-label gates"):
        build_router(model, experts, "meteora", {"mix_intents": 0.25, "features": "embedding", "embedding_dim": 4})
    with pytest.raises(InvalidInputError, match="mix_intents trains multi-label gates"):
        build_router(model, experts, "meteora", {"mix_intents": 0.25, "multi_label": True})
    with pytest.raises(InvalidInputError, match="batch_size >= 2"):
        train_router(model, experts, "meteora", {"k": 2, "multi_label": True, "features": "embedding",
                                                 "embedding_dim": 4, "mix_intents": 0.5},
                     examples=sample_data(2), tokenizer=encode, embed=alphabet_bag, train=TrainConfig(batch_size=1))
    with pytest.raises(InvalidInputError, match=r"mix_intents must be in \[0, 1\)"):
        build_router(model, experts, "meteora", {"mix_intents": 1.0, "multi_label": True, "features": "embedding"})
