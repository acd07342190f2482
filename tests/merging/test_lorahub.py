"""LoraHub on synthetic problems whose right weights are known (spec merging.md §2.3)."""

from __future__ import annotations

import pytest
import torch

from hub.core.errors import InvalidInputError
from merging import merge
from merging.methods.lorahub import compose_factors
from tests.merging.builders import deltas64, max_rel_err, rand_adapter, weighted_delta

W_STAR = [0.8, -0.5, 0.3]


@pytest.fixture(scope="module")
def candidates():
    return [rand_adapter(31, rank=4, alpha=8.0), rand_adapter(32, rank=4, alpha=4.0), rand_adapter(33, rank=4)]


def distance_to(target):
    """Relative squared distance of an adapter's deltas to ``target`` (module -> delta)."""
    norm = sum(float(t.pow(2).sum()) for t in target.values())

    def objective(ad):
        return sum(float((ad.layers[m].delta(torch.float64) - t).pow(2).sum()) for m, t in target.items()) / norm

    return objective


def test_delta_composition_recovers_the_known_weights(candidates):
    objective = distance_to(weighted_delta(candidates, W_STAR))
    out = merge(candidates, "lorahub", params={"objective": objective, "budget": 300, "l1": 0.0})
    found = out.provenance.recipe["weights"]
    assert torch.tensor(found).sub(torch.tensor(W_STAR)).norm() < 0.05
    assert objective(out) <= 1e-4
    report = out.provenance.recipe["report"]
    assert report["evaluations"] <= 300 and report["equivalent"] == {"method": "cat", "weights": found}
    assert max_rel_err(deltas64(out), deltas64(merge(candidates, "cat", weights=found))) < 1e-9


def test_factor_composition_recovers_the_weights_up_to_sign(candidates):
    target_adapter = compose_factors(candidates, W_STAR)
    objective = distance_to(deltas64(target_adapter))
    out = merge(candidates, "lorahub", params={"objective": objective, "budget": 300, "l1": 0.0,
                                               "composition": "factor"})
    w = torch.tensor(out.provenance.recipe["weights"])
    star = torch.tensor(W_STAR)
    assert min((w - star).norm(), (w + star).norm()) < 0.05  # w and -w give the same delta
    assert objective(out) <= 1e-4


def test_single_candidate_is_recovered(candidates):
    one = candidates[0]
    out = merge([one], "lorahub", params={"objective": distance_to(deltas64(one)), "budget": 120, "l1": 0.0})
    assert out.provenance.recipe["weights"][0] == pytest.approx(1.0, abs=0.02)
    assert max_rel_err(deltas64(out), deltas64(one)) < 0.02


def test_budget_is_respected_and_the_seed_makes_it_reproducible(candidates):
    calls = []
    target = distance_to(weighted_delta(candidates, W_STAR))

    def objective(ad):
        calls.append(1)
        return target(ad)

    a = merge(candidates, "lorahub", params={"objective": objective, "budget": 17, "seed": 4})
    assert len(calls) == 17
    b = merge(candidates, "lorahub", params={"objective": target, "budget": 17, "seed": 4})
    assert a.provenance.recipe["weights"] == b.provenance.recipe["weights"]
    c = merge(candidates, "lorahub", params={"objective": target, "budget": 17, "seed": 5})
    assert c.provenance.recipe["weights"] != a.provenance.recipe["weights"]


def test_l1_penalty_shrinks_the_weights(candidates):
    target = distance_to(weighted_delta(candidates, W_STAR))
    free = merge(candidates, "lorahub", params={"objective": target, "budget": 120, "l1": 0.0})
    tight = merge(candidates, "lorahub", params={"objective": target, "budget": 120, "l1": 5.0})
    mean_abs = [sum(abs(w) for w in x.provenance.recipe["weights"]) / 3 for x in (free, tight)]
    assert mean_abs[1] < 0.5 * mean_abs[0]


def test_lorahub_needs_an_objective_and_no_weights(candidates):
    with pytest.raises(InvalidInputError, match="objective"):
        merge(candidates, "lorahub", params={"budget": 10})
    with pytest.raises(InvalidInputError, match="searches the weights"):
        merge(candidates, "lorahub", weights=[1, 1, 1], params={"objective": lambda ad: 0.0})
    assert "objective" not in merge(candidates, "lorahub", params={"objective": lambda ad: 0.0, "budget": 4}
                                    ).provenance.recipe["params"]
