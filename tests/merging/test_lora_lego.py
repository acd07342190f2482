"""LoRA-LEGO (spec merging.md §3.8): exactness, invariances, self-merge, planted clusters, auto k."""

from __future__ import annotations

import pytest
import torch

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec
from merging import merge
from tests.merging.builders import BASE, deltas64, max_rel_err, permute_ranks, rand_adapter, weighted_delta

M = "model.layers.0.mlp.up_proj"
SHAPE = {M: (12, 16)}  # d_out 12, d_in 16


@pytest.fixture(scope="module")
def three():
    """Ranks (4, 2, 3) with scalings (2, 1, 0.5)."""
    return [
        rand_adapter(21, rank=4, alpha=8.0, shapes=SHAPE),
        rand_adapter(22, rank=2, alpha=2.0, shapes=SHAPE),
        rand_adapter(23, rank=3, alpha=1.5, shapes=SHAPE),
    ]


@pytest.mark.parametrize("param_reweight", [True, False])
def test_k_total_rank_without_output_reweighting_equals_cat(three, param_reweight):
    w = [1.0, -0.5, 2.0]
    params = {"k": 9, "output_reweight": False, "param_reweight": param_reweight}
    out = merge(three, "lora_lego", weights=w, params=params)
    assert out.layers[M].rank == 9
    cat = merge(three, "cat", weights=w)
    torch.testing.assert_close(deltas64(out)[M], deltas64(cat)[M], atol=1e-6, rtol=0)
    torch.testing.assert_close(deltas64(out)[M], weighted_delta(three, w)[M], atol=1e-5, rtol=0)


@pytest.mark.parametrize("k", range(1, 10))
@pytest.mark.parametrize("features, canonical", [("raw", False), ("halves_l2", True)])
def test_rank_permutation_and_adapter_order_do_not_change_the_delta(three, k, features, canonical):
    params = {"k": k, "features": features, "canonical": canonical, "n_init": 3}
    ref = deltas64(merge(three, "lora_lego", weights=[1.0, 0.5, 2.0], params=params))
    permuted = [permute_ranks(three[0], 1), permute_ranks(three[1], 2), permute_ranks(three[2], 3)]
    assert max_rel_err(deltas64(merge(permuted, "lora_lego", weights=[1.0, 0.5, 2.0], params=params)), ref) < 1e-9
    reordered = [three[2], three[0], three[1]]
    assert max_rel_err(deltas64(merge(reordered, "lora_lego", weights=[2.0, 1.0, 0.5], params=params)), ref) < 1e-9


def test_self_merge_returns_the_adapter(three):
    one = three[0]
    out = merge([one, one, one], "lora_lego", params={"k": 4})
    assert max_rel_err(deltas64(out), deltas64(one)) < 1e-6
    report = out.provenance.recipe["report"]
    assert report["max_param_factor"] == pytest.approx(1.0) and report["gamma_min"] == pytest.approx(1.0)


def _planted(noise: float = 0.01):
    g = torch.Generator().manual_seed(7)
    proto_a = torch.randn(8, 16, generator=g)  # 8 prototype MSUs: a (16) and b (12)
    proto_b = torch.randn(12, 8, generator=g)
    adapters = []
    for i in range(4):
        idx = [(2 * i + j) % 8 for j in range(4)]  # each prototype is used by two adapters
        a = proto_a[idx] + noise * torch.randn(4, 16, generator=g)
        b = proto_b[:, idx] + noise * torch.randn(12, 4, generator=g)
        adapters.append(LoraAdapter({M: LoraLayer(a=a, b=b, alpha=4.0)}, LoraSpec(base_model=BASE)))
    return adapters, proto_a, proto_b


@pytest.mark.parametrize("k", [8, "auto"])
def test_planted_clusters_are_recovered(k):
    adapters, proto_a, proto_b = _planted()
    out = merge(adapters, "lora_lego", params={"k": k, "output_reweight": False})
    layer = out.layers[M]
    assert layer.rank == 8
    protos = torch.cat([proto_a, proto_b.T], dim=1)  # (8, 28)
    units = torch.cat([layer.a.double(), layer.b.double().T], dim=1)  # (8, 28), scaling is 1
    matched = set()
    for u in units:
        errs = (protos.double() - u).norm(dim=1) / protos.double().norm(dim=1)
        best = int(errs.argmin())
        assert float(errs[best]) < 0.05
        matched.add(best)
    assert matched == set(range(8))  # one centroid per prototype: every cluster is pure


def test_param_reweighting_factor_is_at_least_one_and_output_reweighting_scales(three):
    out = merge(three, "lora_lego", params={"k": 2, "output_reweight": False})
    assert out.provenance.recipe["report"]["max_param_factor"] >= 1.0
    on = merge(three, "lora_lego", params={"k": 2, "param_reweight": False})
    off = merge(three, "lora_lego", params={"k": 2, "param_reweight": False, "output_reweight": False})
    gamma = (3.0 / 2.0) ** 0.5  # sqrt(mean rank 3 / k 2)
    torch.testing.assert_close(deltas64(on)[M], gamma * deltas64(off)[M], atol=1e-6, rtol=1e-6)
    linf = merge(three, "lora_lego", params={"k": 2, "norm": "linf", "output_reweight": False})
    assert max_rel_err(deltas64(linf), deltas64(out)) > 1e-6  # the norm choice matters


def test_rank_pruning_of_one_adapter(three):
    """k < r on a single adapter prunes it (the paper's rank pruner); k = r is the identity."""
    one = three[0]
    pruned = merge([one], "lora_lego", params={"k": 3})
    assert pruned.layers[M].rank == 3
    assert max_rel_err(deltas64(merge([one], "lora_lego", params={"k": 4})), deltas64(one)) < 1e-6
