"""Contract suite generated from the registry: every merge method passes the same checks."""

from __future__ import annotations

import json

import pytest
import torch

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError
from hub.core.provenance import Provenance
from merging import describe_methods, merge, method_names
from tests.merging.builders import SHAPES, deltas64, max_rel_err, permute_ranks, rand_adapter, weighted_delta

WEIGHTS = [0.7, -0.4, 1.2]


def _target_objective(adapters, weights):
    """LoraHub objective with a known optimum: distance of the merged delta to a target sum."""
    target = weighted_delta(adapters, weights)

    def objective(ad):
        return sum(float((ad.layers[m].delta(torch.float64) - t).pow(2).sum()) for m, t in target.items())

    return objective


def contract_params(method: str, adapters) -> dict:
    """Params each method runs with in the contract (cheap but non-trivial)."""
    if method == "lorahub":
        return {"objective": _target_objective(adapters, [0.5, 0.2, -0.3][: len(adapters)]), "budget": 24}
    return {
        "ties": {"density": 0.5},
        "ties_svd": {"density": 0.5, "svd_rank": 3},
        "dare_linear": {"density": 0.6, "seed": 3},
        "dare_ties": {"density": 0.6, "seed": 3},
        "dare_linear_svd": {"density": 0.6, "seed": 3},
        "dare_ties_svd": {"density": 0.6, "seed": 3},
        "magnitude_prune": {"density": 0.4},
        "magnitude_prune_svd": {"density": 0.4},
        "lora_lego": {"k": 3, "n_init": 2},
        "svd": {"svd_rank": 3},
    }.get(method, {})


#: Params under which merging one adapter with weight 1 must return it (pruning off, no truncation).
IDENTITY_PARAMS = {
    "ties": {"density": 1.0}, "ties_svd": {"density": 1.0}, "magnitude_prune": {"density": 1.0},
    "magnitude_prune_svd": {"density": 1.0}, "dare_linear": {"density": 1.0}, "dare_ties": {"density": 1.0},
    "dare_linear_svd": {"density": 1.0}, "dare_ties_svd": {"density": 1.0},
}
#: Methods that search their own weights: identity is checked in their own test module.
SEARCHES_WEIGHTS = {"lorahub": "tests/merging/test_lorahub.py::test_single_candidate_is_recovered"}

#: One invalid value per method: (params, words the error must contain).
INVALID = {
    "cat": ({"svd_rank": 2}, "unknown param"),
    "linear": ({"rank": 0}, "rank must be in [1, inf], got 0"),
    "svd": ({"svd_rank": -1}, "svd_rank must be in [1, inf], got -1"),
    "ties": ({"density": 1.5}, "density must be in (0, 1], got 1.5"),
    "ties_svd": ({"majority_sign_method": "mean"}, "majority_sign_method must be 'total' or 'frequency'"),
    "dare_linear": ({"density": 0}, "density must be in (0, 1], got 0"),
    "dare_ties": ({"seed": -2}, "seed must be in [0, inf], got -2"),
    "dare_linear_svd": ({"density": "high"}, "density must be float"),
    "dare_ties_svd": ({"svd_solver": "magic"}, "svd_solver must be 'full' or 'randomized'"),
    "magnitude_prune": ({"density": -0.1}, "density must be in (0, 1], got -0.1"),
    "magnitude_prune_svd": ({"svd_rank": 1.5}, "svd_rank must be int | null, got 1.5"),
    "lora_lego": ({"k": "many"}, "k must be a positive integer, 'auto' or null"),
    "lorahub": ({"budget": 1}, "budget must be in [2, inf], got 1"),
}

METHODS = method_names()


def test_every_method_has_docs_and_contract_rows():
    rows = {d["name"]: d for d in describe_methods()}
    assert set(rows) == set(METHODS) == set(INVALID)
    for name, d in rows.items():
        assert d["paper"] and d["paper"].startswith("https://"), name
        assert d["summary"], name
        assert all(p["doc"] for p in d["params"]), name
        if name not in SEARCHES_WEIGHTS:
            assert set(IDENTITY_PARAMS.get(name, {})) <= {p["name"] for p in d["params"]}


@pytest.mark.parametrize("method", METHODS)
def test_shapes_kept_finite_and_deterministic(method, trio):
    params = contract_params(method, trio)
    w = None if method == "lorahub" else WEIGHTS
    out = merge(trio, method, weights=w, params=params)
    assert out.shapes() == dict(SHAPES)
    assert out.base_model == trio[0].base_model
    for la in out.layers.values():
        assert torch.isfinite(la.a).all() and torch.isfinite(la.b).all()
        assert la.scaling == pytest.approx(1.0) and not la.use_rslora  # export rule: runtime scaling 1
        assert la.a.dtype == trio[0].dtype
    again = merge(trio, method, weights=w, params=contract_params(method, trio))
    assert again.content_hash() == out.content_hash()


@pytest.mark.parametrize("method", METHODS)
def test_recipe_round_trips_as_json_and_reproduces(method, trio):
    params = contract_params(method, trio)
    w = None if method == "lorahub" else WEIGHTS
    out = merge(trio, method, weights=w, params=params, names=["ns/a@1", "ns/b@2", "ns/c@1"])
    prov = Provenance.from_dict(json.loads(json.dumps(out.provenance.to_dict())))
    assert prov.method == method and prov.recipe_hash() == out.provenance.recipe_hash()
    assert [p.name for p in prov.parents] == ["ns/a@1", "ns/b@2", "ns/c@1"]
    assert [p.weight for p in prov.parents] == prov.recipe["weights"]
    if method == "lorahub":  # the found weights reproduce the adapter as a cat merge
        eq = prov.recipe["report"]["equivalent"]
        again = merge(trio, eq["method"], weights=eq["weights"])
    else:
        again = merge(trio, prov.method, weights=prov.recipe["weights"], params=prov.recipe["params"])
    assert again.content_hash() == out.content_hash()


@pytest.mark.parametrize("method", [m for m in METHODS if m not in SEARCHES_WEIGHTS])
def test_one_adapter_with_weight_one_is_returned(method, trio):
    out = merge([trio[0]], method, weights=[1.0], params=IDENTITY_PARAMS.get(method, {}))
    assert max_rel_err(deltas64(out), deltas64(trio[0])) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_permuting_an_inputs_ranks_does_not_change_the_delta(method, trio):
    params = contract_params(method, trio)
    w = None if method == "lorahub" else WEIGHTS
    ref = merge(trio, method, weights=w, params=params)
    perm = [trio[0], permute_ranks(trio[1], 5), permute_ranks(trio[2], 6)]
    out = merge(perm, method, weights=w, params=contract_params(method, perm))
    assert max_rel_err(deltas64(out), deltas64(ref)) < 1e-5


@pytest.mark.parametrize("method", METHODS)
def test_incompatible_inputs_are_refused(method, trio):
    params = contract_params(method, trio)
    other_base = rand_adapter(9, base="someone/else-7b")
    with pytest.raises(IncompatibleAdaptersError, match="different base models"):
        merge([trio[0], other_base], method, params=params)
    wrong_shape = rand_adapter(9, shapes={"model.layers.0.self_attn.q_proj": (12, 20)})
    with pytest.raises(IncompatibleAdaptersError, match="q_proj"):
        merge([trio[0], wrong_shape], method, params=params)
    with pytest.raises(IncompatibleAdaptersError, match="no adapters"):
        merge([], method, params=params)


@pytest.mark.parametrize("method", METHODS)
def test_invalid_params_are_refused_with_the_field_and_value(method, trio):
    bad, words = INVALID[method]
    params = {**contract_params(method, trio), **bad}
    w = None if method == "lorahub" else WEIGHTS
    with pytest.raises(InvalidInputError) as e:
        merge(trio, method, weights=w, params=params)
    assert words in str(e.value)
    with pytest.raises(InvalidInputError, match="unknown param.*'colour'.*valid:"):
        merge(trio, method, weights=w, params={**contract_params(method, trio), "colour": "red"})


@pytest.mark.parametrize("method", METHODS)
def test_result_round_trips_through_the_peft_format(method, trio, tmp_path):
    from hub.core import load_peft, save_peft
    from hub.core.peft_io import adapter_config

    w = None if method == "lorahub" else WEIGHTS
    out = merge(trio, method, weights=w, params=contract_params(method, trio))
    cfg = adapter_config(out)
    assert cfg["use_rslora"] is False and cfg["base_model_name_or_path"] == trio[0].base_model
    back = load_peft(save_peft(out, tmp_path / method))
    assert max_rel_err(deltas64(back), deltas64(out)) < 1e-7


#: Factor-space methods depend on how a scalar is split between A and B (spec §1.4, gauge note).
GAUGE_DEPENDENT = {"lora_lego": "k-means on folded factors; gauge-fixed with canonical=True below"}


def _rescaled(adapter, c: float):
    """(A, alpha) -> (c A, alpha / c): the same deltas, another split of the scalar."""
    from hub.core.adapter import LoraAdapter, LoraLayer

    return LoraAdapter(
        {m: LoraLayer(la.a * c, la.b, la.alpha / c, la.use_rslora) for m, la in adapter.layers.items()}, adapter.spec
    )


@pytest.mark.parametrize("method", METHODS)
def test_scale_bookkeeping(method, trio):
    params = contract_params(method, trio)
    if method in GAUGE_DEPENDENT:
        params = {**params, "canonical": True}
    w = None if method == "lorahub" else WEIGHTS
    ref = merge(trio, method, weights=w, params=params)
    moved = [trio[0], _rescaled(trio[1], 4.0), _rescaled(trio[2], 0.25)]
    out = merge(moved, method, weights=w, params=params)  # (lorahub's target deltas are the same)
    assert max_rel_err(deltas64(out), deltas64(ref)) < 1e-5
