"""Hand-checked numbers: every method on 2x2 deltas small enough to compute on paper.

Adapters (rank 1, scaling 1):  D1 = [1,0]^T [2,-1] = [[2,-1],[0,0]]
                               D2 = [1,1]^T [1,-3] = [[1,-3],[1,-3]]
"""

from __future__ import annotations

import pytest
import torch

from merging import merge
from tests.merging.builders import from_factors

M = "model.layers.0.self_attn.q_proj"


@pytest.fixture(scope="module")
def pair():
    d1 = from_factors({M: ([[2.0, -1.0]], [[1.0], [0.0]])})
    d2 = from_factors({M: ([[1.0, -3.0]], [[1.0], [1.0]])})
    return [d1, d2]


def delta(ad):
    return ad.layers[M].delta(torch.float64)


def close(x, rows):
    torch.testing.assert_close(x, torch.tensor(rows, dtype=torch.float64), atol=1e-6, rtol=0)


def test_cat_and_linear_weighted_sum(pair):
    # D1 - 0.5 D2 = [[2-0.5, -1+1.5], [-0.5, 1.5]]
    for method in ("cat", "linear"):
        close(delta(merge(pair, method, weights=[1.0, -0.5])), [[1.5, 0.5], [-0.5, 1.5]])
    assert merge(pair, "cat", weights=[1.0, -0.5]).layers[M].rank == 2


def test_svd_keeps_the_top_singular_direction():
    # D1 + D2 = diag(3, 1): the rank-1 truncation is diag(3, 0) and keeps 9/10 of the energy.
    a = from_factors({M: ([[3.0, 0.0]], [[1.0], [0.0]])})
    b = from_factors({M: ([[0.0, 1.0]], [[0.0], [1.0]])})
    out = merge([a, b], "svd", params={"svd_rank": 1})
    close(delta(out), [[3.0, 0.0], [0.0, 0.0]])
    assert out.provenance.recipe["report"]["min_energy"] == pytest.approx(0.9)
    out2 = merge([a, b], "svd")  # default rank = max input rank = 1
    close(delta(out2), [[3.0, 0.0], [0.0, 0.0]])


def test_ties_by_hand(pair):
    # density 0.5 keeps 2 of 4 entries: D1 -> [[2,-1],[0,0]], D2 -> [[0,-3],[0,-3]].
    # elected sign of the sum [[2,-4],[0,-3]]: [[+,-],[+,-]]; agreeing entries averaged:
    # [[2/1, (-1-3)/2], [0, -3/1]] = [[2,-2],[0,-3]].
    for method in ("ties", "ties_svd"):
        out = merge(pair, method, params={"density": 0.5} | ({"svd_rank": 2} if method == "ties_svd" else {}))
        close(delta(out), [[2.0, -2.0], [0.0, -3.0]])
    # weights apply after the election: 2*D1 and 1*D2 -> [[4/1, (-2-3)/2], [0, -3]]
    close(delta(merge(pair, "ties", weights=[2.0, 1.0], params={"density": 0.5})), [[4.0, -2.5], [0.0, -3.0]])


def test_ties_frequency_sign(pair):
    # density 1: sums of signs [[2,-2],[1,-1]] -> [[+,-],[+,-]]; entries of D1 [[2,-1],[0,0]] and
    # D2 [[1,-3],[1,-3]] that agree: [[(2+1)/2, (-1-3)/2], [1/1, -3/1]]
    out = merge(pair, "ties", params={"density": 1.0, "majority_sign_method": "frequency"})
    close(delta(out), [[1.5, -2.0], [1.0, -3.0]])


def test_magnitude_prune_by_hand(pair):
    # trimmed D1 + trimmed D2 = [[2,-1],[0,0]] + [[0,-3],[0,-3]]
    close(delta(merge(pair, "magnitude_prune", params={"density": 0.5})), [[2.0, -4.0], [0.0, -3.0]])
    close(delta(merge(pair, "magnitude_prune_svd", params={"density": 0.5, "svd_rank": 2})),
          [[2.0, -4.0], [0.0, -3.0]])


def test_dare_without_dropping_is_linear_and_ties(pair):
    close(delta(merge(pair, "dare_linear", weights=[1.0, -0.5], params={"density": 1.0})),
          [[1.5, 0.5], [-0.5, 1.5]])
    # dare_ties at density 1 is TIES without trimming: [[1.5,-2],[1,-3]] (as in the frequency case)
    close(delta(merge(pair, "dare_ties", params={"density": 1.0})), [[1.5, -2.0], [1.0, -3.0]])
    close(delta(merge(pair, "dare_ties_svd", params={"density": 1.0, "svd_rank": 2})), [[1.5, -2.0], [1.0, -3.0]])
    close(delta(merge(pair, "dare_linear_svd", weights=[1.0, -0.5], params={"density": 1.0, "svd_rank": 2})),
          [[1.5, 0.5], [-0.5, 1.5]])


def test_dare_entries_are_dropped_or_rescaled():
    # One adapter, density 0.5, full output rank (30): each entry is 0 or exactly twice the original.
    big = from_factors({M: (torch.randn(2, 40, generator=torch.Generator().manual_seed(0)).tolist(),
                            torch.randn(30, 2, generator=torch.Generator().manual_seed(1)).tolist())})
    d = big.layers[M].delta(torch.float64)
    out = delta(merge([big], "dare_linear_svd", params={"density": 0.5, "seed": 7, "svd_rank": 30}))
    kept = out.abs() > 1e-4
    torch.testing.assert_close(out[kept], 2 * d[kept], atol=1e-4, rtol=1e-4)
    assert 0.4 < kept.double().mean() < 0.6
    other = delta(merge([big], "dare_linear_svd", params={"density": 0.5, "seed": 8, "svd_rank": 30}))
    assert not torch.equal(other.abs() > 1e-4, kept)  # the seed drives the mask


def test_dare_is_unbiased_over_seeds(pair):
    # E[DARE(D)] = D: the mean over 300 seeds approaches the weighted sum.
    acc = torch.zeros(2, 2, dtype=torch.float64)
    for seed in range(300):
        acc += delta(merge(pair, "dare_linear", weights=[1.0, -0.5], params={"density": 0.5, "seed": seed}))
    torch.testing.assert_close(acc / 300, torch.tensor([[1.5, 0.5], [-0.5, 1.5]], dtype=torch.float64),
                               atol=0.25, rtol=0)


def test_lora_lego_by_hand():
    # Two adapters whose rank-1 units u = [a; b] are [1,0 ; 1,0] and [3,0 ; 1,0] (scaling 1).
    # k=1: one cluster, centroid [2,0 ; 1,0] (norm sqrt5); mean member norm (sqrt2 + sqrt10)/2;
    # param reweighting scales the centroid by ((sqrt2+sqrt10)/2)/sqrt5, which multiplies the
    # delta b a^T = [[2,0],[0,0]] by that factor squared; output reweighting sqrt(1/1) = 1.
    a = from_factors({M: ([[1.0, 0.0]], [[1.0], [0.0]])})
    b = from_factors({M: ([[3.0, 0.0]], [[1.0], [0.0]])})
    f = ((2**0.5 + 10**0.5) / 2) / 5**0.5
    out = merge([a, b], "lora_lego", params={"k": 1})
    close(delta(out), [[2.0 * f * f, 0.0], [0.0, 0.0]])
    plain = merge([a, b], "lora_lego", params={"k": 1, "param_reweight": False})
    close(delta(plain), [[2.0, 0.0], [0.0, 0.0]])
    # output reweighting with k=1 and r_ref = mean rank 1 is 1; with k=2 (singletons) sqrt(1/2)
    two = merge([a, b], "lora_lego", params={"k": 2})
    close(delta(two), [[(1 + 3) * 0.5**0.5, 0.0], [0.0, 0.0]])


def test_dense_methods_stream_row_blocks_exactly():
    """Modules taller than a row block give the whole-matrix result, ties in magnitude included."""
    from peft.utils import merge_utils

    from merging.dense import BLOCK_ROWS
    from tests.merging.builders import rand_adapter

    tall = {M: (2 * BLOCK_ROWS + 176, 24)}
    ads = [rand_adapter(i, rank=3, shapes=tall) for i in range(3)]
    w = [1.0, 0.5, -0.7]
    out = merge(ads, "ties_svd", weights=w, params={"density": 0.3, "svd_rank": 24})
    ref = merge_utils.ties([a.layers[M].delta() for a in ads], torch.tensor(w), 0.3, "total")
    assert float((out.layers[M].delta() - ref).norm() / ref.norm()) < 1e-5
    # a constant delta: every magnitude ties, exactly floor(0.3 * numel) entries survive the trim
    ones = from_factors({M: ([[1.0] * 10], [[1.0]] * (BLOCK_ROWS + 588))})
    kept = delta(merge([ones], "magnitude_prune_svd", params={"density": 0.3, "svd_rank": 10}))
    assert int((kept.abs() > 0.5).sum()) == int(0.3 * (BLOCK_ROWS + 588) * 10)
