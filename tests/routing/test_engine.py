"""RoutedLoRALinear semantics: one-hot = PEFT, backends equal the dense reference, padding, removal."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from hub.core.adapter import LoraAdapter, LoraLayer
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from routing import GroupWeights, RoutedLoRALinear, build_router
from routing.bank import ExpertBank
from routing.context import RoutingContext
from tests.helpers import peft_logits


def _force(routed, index: int, n: int) -> None:
    logits = torch.full((n,), -10.0)
    logits[index] = 10.0
    for g in routed.gates.values():
        g.force(logits)


def _logits(routed, ids, am=None):
    with torch.no_grad():
        return routed(input_ids=ids, attention_mask=am).logits


@pytest.mark.parametrize("backend", ["dense", "gather", "grouped"])
def test_one_hot_gate_equals_peft_single_adapter(model, experts, expert_dirs, base_model, batch, backend):
    ids, _ = batch
    routed = build_router(model, experts, "meteora", {"k": 1, "backend": backend})
    for i, d in enumerate(expert_dirs):
        _force(routed, i, len(experts))
        ref = peft_logits(base_model, d, ids)
        torch.testing.assert_close(_logits(routed, ids), ref, atol=1e-6, rtol=0)


def test_zero_delta_is_exactly_the_base(model, base_model, experts, batch):
    ids, am = batch
    zeroed = [LoraAdapter({m: LoraLayer(la.a, torch.zeros_like(la.b), la.alpha) for m, la in ad.layers.items()},
                          ad.spec) for ad in experts]
    routed = build_router(model, zeroed, "meteora", {"k": 2})
    with torch.no_grad():
        assert torch.equal(_logits(routed, ids, am), base_model(input_ids=ids, attention_mask=am).logits)


def test_remove_restores_the_base_model(model, base_model, experts, batch):
    ids, _ = batch
    routed = build_router(model, experts, "meteora", {})
    assert any(isinstance(m, RoutedLoRALinear) for m in model.modules())
    restored = routed.remove()
    assert not any(isinstance(m, RoutedLoRALinear) for m in restored.modules())
    with torch.no_grad():
        assert torch.equal(restored(input_ids=ids).logits, base_model(input_ids=ids).logits)
    assert {n for n, _ in restored.named_modules()} == {n for n, _ in base_model.named_modules()}


def _site_layer(n=4, r=3, d_in=8, d_out=6, seed=0, group_size=None):
    g = torch.Generator().manual_seed(seed)
    layers = [LoraLayer(torch.randn(r - (i % 2), d_in, generator=g), torch.randn(d_out, r - (i % 2), generator=g),
                        alpha=2.0 + i) for i in range(n)]
    base = nn.Linear(d_in, d_out)
    bank = ExpertBank.from_layers(layers, d_in, d_out)
    return RoutedLoRALinear(base, bank, site="s", context=RoutingContext(), group_size=group_size), layers


def _token_weights(m, n, k, seed=1, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    idx = torch.stack([torch.randperm(n, generator=g)[:k] for _ in range(m)])
    val = torch.rand(m, k, generator=g).requires_grad_(requires_grad)
    return GroupWeights(idx, val)


@pytest.mark.parametrize("group_size", [None, 1])
def test_token_backends_equal_dense_reference_outputs_and_grads(group_size):
    layer, _ = _site_layer(group_size=group_size)
    x0 = torch.randn(2, 5, 8)
    k = 2 if group_size is None else 5
    results = {}
    for backend in ("dense", "gather", "grouped"):
        x = x0.clone().requires_grad_(True)
        w = _token_weights(10, layer.n_groups, k, requires_grad=True)
        layer.bank.a.requires_grad_(True)
        layer.bank.a.grad = None
        out = layer.lora(x, w, backend)
        out.pow(2).sum().backward()
        results[backend] = (out.detach(), x.grad, w.val.grad, layer.bank.a.grad.clone())
    for backend in ("gather", "grouped"):
        for got, ref in zip(results[backend], results["dense"], strict=True):
            # float32 sums in a different order: ~2e-5 apart on gradients of size ~0.1; a wrong backend is O(1) off
            torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)


def test_row_fold_equals_dense_and_the_merged_weight():
    layer, layers = _site_layer()
    x = torch.randn(3, 4, 8)
    w = GroupWeights(torch.tensor([[0, 2], [1, 3], [3, 3]]), torch.tensor([[0.7, 0.3], [0.5, 0.5], [1.0, 0.0]]),
                     level="row")
    fold, dense = layer.lora(x, w, "fold"), layer.lora(x, w, "dense")
    torch.testing.assert_close(fold, dense, atol=1e-5, rtol=1e-5)
    # T3: a constant mixture equals W0 + sum_i w_i s_i B_i A_i merged into the weight
    y = layer.base(x[0]) + fold[0]
    omega = torch.tensor([0.7, 0.0, 0.3, 0.0])
    delta = sum(omega[i] * layers[i].delta() for i in range(4))
    torch.testing.assert_close(y, x[0] @ (layer.base.weight + delta).t() + layer.base.bias, atol=1e-5, rtol=1e-5)
    layer.merge(omega)
    torch.testing.assert_close(layer.base(x[0]), y, atol=1e-5, rtol=1e-5)
    layer.unmerge()
    torch.testing.assert_close(layer.base(x[0]) + fold[0], y, atol=0, rtol=0)


def test_zero_padding_ranks_is_exact():
    layer, _ = _site_layer()
    x = torch.randn(7, 8)
    w = _token_weights(7, 4, 2)
    before = layer.lora(x, w, "dense")
    layer.bank.resize(4, layer.bank.rank + 5)
    after = layer.lora(x, w, "dense")
    torch.testing.assert_close(after, before, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer.lora(x, w, "gather"), before, atol=1e-6, rtol=1e-6)


def test_unselected_experts_cannot_leak_even_as_nan():
    layer, _ = _site_layer()
    x = torch.randn(6, 8)
    w = GroupWeights(torch.tensor([[0, 1]] * 6), torch.full((6, 2), 0.5))
    ref = {b: layer.lora(x, w, b) for b in ("dense", "gather", "grouped")}
    with torch.no_grad():
        layer.bank.a[2].fill_(float("nan"))
        layer.bank.bt[3].normal_()
    for b, r in ref.items():
        assert torch.equal(layer.lora(x, w, b), r)


def test_permuting_experts_with_the_gate_keeps_output(base_model, experts, batch):
    ids, am = batch
    perm = [2, 0, 3, 1]
    a = build_router(copy.deepcopy(base_model), experts, "meteora", {"k": 2})
    torch.manual_seed(0)
    b = build_router(copy.deepcopy(base_model), [experts[i] for i in perm], "meteora", {"k": 2})
    with torch.no_grad():
        for name, g in a.gates.items():
            b.gates[name].proj.weight.copy_(g.proj.weight[perm])
    ref = _logits(a, ids, am)
    torch.testing.assert_close(_logits(b, ids, am), ref, atol=1e-5, rtol=1e-5)
    with torch.no_grad():  # experts permuted alone: a different model
        for name, g in a.gates.items():
            b.gates[name].proj.weight.copy_(g.proj.weight)
    assert not torch.allclose(_logits(b, ids, am), ref, atol=1e-4)


def test_experts_for_another_base_or_shape_are_refused(model, experts):
    other = experts[0].with_spec(base_model="someone/else")
    with pytest.raises(IncompatibleAdaptersError, match="someone/else"):
        build_router(model, [experts[1], other], "meteora", {})
    bad = LoraAdapter({"model.layers.0.self_attn.q_proj": LoraLayer(torch.randn(2, 5), torch.randn(32, 2), 2.0)})
    with pytest.raises(IncompatibleAdaptersError):
        build_router(model, [experts[0], bad], "meteora", {})
    with pytest.raises(InvalidInputError, match="k must be"):
        build_router(model, experts, "meteora", {"k": 0})
    with pytest.raises(InvalidInputError, match="unknown MeteoraConfig field"):
        build_router(model, experts, "meteora", {"top_k": 2})


def test_block_gated_single_lora_equals_the_expert_moe():
    """SMoRA's identity: N experts of rank b with gate g == one rank-Nb LoRA with w = repeat(g, b)."""
    layer, _ = _site_layer(n=4, r=3)
    with torch.no_grad():
        layer.bank.scale.fill_(1.0)
    x = torch.randn(5, 8)
    g = torch.rand(5, 4)
    moe = layer.lora(x, GroupWeights(torch.arange(4).expand(5, 4), g), "dense")
    layer.group_size = 1  # every rank its own group
    ranks = GroupWeights(torch.arange(12).expand(5, 12), g.repeat_interleave(3, dim=1))
    torch.testing.assert_close(layer.lora(x, ranks, "dense"), moe, atol=1e-6, rtol=1e-6)
    torch.testing.assert_close(layer.lora(x, ranks, "gather"), moe, atol=1e-6, rtol=1e-6)


def test_bf16_model_stays_close_to_fp32(base_model, experts, batch):
    ids, am = batch
    torch.manual_seed(0)  # gate init must not depend on which tests ran before on this worker
    ref = build_router(copy.deepcopy(base_model), experts, "meteora", {"k": 2})
    low = build_router(copy.deepcopy(base_model).to(torch.bfloat16), experts, "meteora", {"k": 2})
    for name, g in ref.gates.items():
        low.gates[name].load_state_dict(g.state_dict())
    assert all(lay.bank.a.dtype == torch.bfloat16 for lay in low.layers.values())
    a, b = _logits(ref, ids, am), _logits(low, ids, am).float()
    assert torch.isfinite(b).all()
    # bf16 may flip a near-tie top-2 choice on a few tokens (a discrete change), so bound the typical error
    # tightly and the worst token loosely.
    assert (a - b).abs().mean() < 0.02 * a.abs().mean() + 0.02
    assert (a - b).abs().max() < 0.5 * a.abs().max() + 0.05
