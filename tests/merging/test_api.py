"""The public entry points: merge(), describe_methods(), choose_method(), lazy imports."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from hub.core.errors import InvalidInputError, NotFoundError, UnknownNameError
from hub.core.provenance import ParentRef
from merging import choose_method, config_class, describe_methods, merge
from merging.auto import delta_cosines
from tests.merging.builders import SHAPES, deltas64, max_rel_err, rand_adapter


def test_unknown_method_lists_the_known_ones(trio):
    with pytest.raises(UnknownNameError) as e:
        merge(trio, "avrage")
    assert isinstance(e.value, NotFoundError)
    assert "unknown merge method 'avrage'" in str(e.value)
    for name in ("cat", "ties", "lora_lego", "lorahub"):
        assert name in str(e.value)


def test_params_errors_name_the_field_and_value(trio):
    with pytest.raises(InvalidInputError, match=r"density must be in \(0, 1\], got 1.5"):
        merge(trio, "ties", params={"density": 1.5})
    with pytest.raises(InvalidInputError, match="unknown param.*'densty'; valid: svd_solver, density, majority_sign"):
        merge(trio, "ties", params={"densty": 0.5})
    with pytest.raises(InvalidInputError, match="weights has 2 entries but 3 adapters"):
        merge(trio, "cat", weights=[1.0, 2.0])
    with pytest.raises(InvalidInputError, match=r"weights\[1\] must be a finite number"):
        merge(trio, "cat", weights=[1.0, float("nan"), 1.0])
    with pytest.raises(InvalidInputError, match="params must be an object"):
        merge(trio, "cat", params=[1, 2])  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="names has 1 entries"):
        merge(trio, "cat", names=["only/one"])


def test_json_numbers_are_coerced(trio):
    a = merge(trio, "svd", params={"svd_rank": 2.0})  # JSON has no int/float distinction
    b = merge(trio, "svd", params={"svd_rank": 2})
    assert a.content_hash() == b.content_hash()
    assert a.provenance.recipe["params"] == {"svd_rank": 2}
    cfg = config_class("ties").from_params({"density": 1})
    assert cfg.density == 1.0 and isinstance(cfg.density, float)


def test_provenance_records_method_version_recipe_and_parents(trio):
    parents = [ParentRef("ns/a", "1"), ParentRef("ns/b", "3", weight=9.0), ParentRef("ns/c", "abc123")]
    out = merge(trio, "ties_svd", weights=[1.0, 0.5, 2.0], params={"density": 0.4}, parents=parents)
    p = out.provenance
    assert p.method == "ties_svd" and p.method_version == "1"
    assert p.recipe["params"] == {"density": 0.4, "majority_sign_method": "total", "svd_rank": None,
                                  "svd_solver": "full"}
    assert p.recipe["weights"] == [1.0, 0.5, 2.0]
    assert [(x.name, x.version, x.weight) for x in p.parents] == [("ns/a", "1", 1.0), ("ns/b", "3", 9.0),
                                                                  ("ns/c", "abc123", 2.0)]
    assert 0.0 < p.recipe["report"]["min_energy"] <= 1.0
    json.dumps(p.to_dict())
    # same recipe, same hash; other params, other hash
    assert merge(trio, "ties_svd", weights=[1.0, 0.5, 2.0], params={"density": 0.4},
                 parents=parents).provenance.recipe_hash() == p.recipe_hash()
    assert merge(trio, "ties_svd", weights=[1.0, 0.5, 2.0], params={"density": 0.5},
                 parents=parents).provenance.recipe_hash() != p.recipe_hash()


def test_union_of_modules_absent_adapters_are_skipped():
    a = rand_adapter(1, shapes={k: v for k, v in list(SHAPES.items())[:2]})
    b = rand_adapter(2, shapes={k: v for k, v in list(SHAPES.items())[1:]})
    out = merge([a, b], "linear", weights=[1.0, 2.0])
    assert set(out.layers) == set(SHAPES)
    only_a = list(SHAPES)[0]
    assert max_rel_err({only_a: deltas64(out)[only_a]}, {only_a: deltas64(a)[only_a]}) < 1e-6


def test_svd_randomized_solver_is_close_to_full():
    big = {"model.layers.0.mlp.up_proj": (300, 200)}
    ads = [rand_adapter(i, rank=8, shapes=big) for i in range(3)]
    full = merge(ads, "ties_svd", params={"density": 0.5, "svd_rank": 8})
    fast = merge(ads, "ties_svd", params={"density": 0.5, "svd_rank": 8, "svd_solver": "randomized"})
    m = next(iter(big))
    dense = deltas64(merge(ads, "ties_svd", params={"density": 0.5, "svd_rank": 200}))[m]  # exact TIES
    best = float((dense - deltas64(full)[m]).norm())  # the optimal rank-8 error (Eckart-Young)
    assert best <= float((dense - deltas64(fast)[m]).norm()) <= 1.02 * best
    e_full = full.provenance.recipe["report"]["min_energy"]
    assert fast.provenance.recipe["report"]["min_energy"] == pytest.approx(e_full, rel=0.02)


def test_describe_methods_is_json_and_complete():
    rows = describe_methods()
    json.dumps(rows)
    ties = next(r for r in rows if r["name"] == "ties")
    assert ties["paper"] == "https://arxiv.org/abs/2306.01708"
    density = next(p for p in ties["params"] if p["name"] == "density")
    assert density["default"] == 0.2 and density["type"] == "float" and "(0, 1]" in density["doc"]
    hub = next(r for r in rows if r["name"] == "lorahub")
    objective = next(p for p in hub["params"] if p["name"] == "objective")
    assert objective["json"] is False


def test_choose_method_rules():
    one = choose_method([rand_adapter(1)], [0.9])
    assert one.method == "linear" and one.weights == [1.0] and "unchanged" in one.reason
    small = choose_method([rand_adapter(1), rand_adapter(2)], [0.9, 0.3])
    assert small.method == "cat" and small.weights == [0.75, 0.25] and "exact" in small.reason
    assert "given ones normalised to sum 1" in small.reason  # it said "task similarities": it gets softmax weights
    base = rand_adapter(5, rank=8)
    from hub.core.adapter import LoraAdapter, LoraLayer

    neg = LoraAdapter({m: LoraLayer(-la.a, la.b, la.alpha) for m, la in base.layers.items()}, base.spec)
    many = [rand_adapter(10 + i, rank=8) for i in range(7)]
    conflict = choose_method([base, neg, *many], [1.0] * 9)
    assert conflict.method == "ties_svd" and "conflict" in conflict.reason and conflict.params["svd_rank"] == 8
    aligned = [rand_adapter(5, rank=8, alpha=float(a)) for a in range(1, 10)]  # one direction, 9 scales
    calm = choose_method(aligned, [0.5] * 9)
    assert calm.method == "lora_lego" and calm.params == {"k": 8} and calm.weights == [1.0] * 9
    assert "scaled so the largest is 1" in calm.reason and "scaled so the largest is 1" in conflict.reason
    assert delta_cosines([base, neg])[0][1] == pytest.approx(-1.0)
    assert delta_cosines(aligned)[0][8] == pytest.approx(1.0)
    merge(aligned, calm.method, weights=calm.weights, params=calm.params)  # the choice runs
    with pytest.raises(InvalidInputError, match="task_similarities has 1"):
        choose_method([base, neg], [1.0])


def test_importing_merging_does_not_import_torch():
    code = "import sys, merging, merging.registry; assert 'torch' not in sys.modules, 'torch imported'"
    subprocess.run([sys.executable, "-c", code], check=True)
