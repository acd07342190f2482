"""Loom's methods against ``peft.add_weighted_adapter`` on the same inputs (a pico Llama).

Where PEFT is right (cat; the svd family on plain LoRA, PEFT 0.21 applies each scaling once), the
deltas must match. Where PEFT differs by design (linear/ties/dare/magnitude_prune combine A and B
separately; rsLoRA inputs give a sqrt(r') too large result), the test asserts the documented
difference: Loom equals the delta-space definition and PEFT does not.
"""

from __future__ import annotations

import copy
import math
import warnings

import peft
import pytest
import torch
from peft.utils import merge_utils

from hub.core import load_peft, save_peft
from merging import merge
from tests.helpers import make_peft_adapter, peft_logits
from tests.merging.builders import deltas64, max_rel_err, weighted_delta

# name -> (seed, r, alpha, use_rslora)
SOURCES = {"a0": (11, 4, 8, False), "a1": (12, 4, 16, False), "a2": (13, 2, 4, False),
           "rs0": (14, 4, 8, True), "rs1": (15, 2, 6, True)}


@pytest.fixture(scope="module")
def setup(pico, tmp_path_factory):
    """PEFT folders, the same adapters loaded by Loom, and one PeftModel holding all of them."""
    from peft import PeftModel

    root = tmp_path_factory.mktemp("parity")
    dirs = {}
    for name, (seed, r, alpha, rs) in SOURCES.items():
        dirs[name] = make_peft_adapter(pico, root / name, seed=seed, r=r, alpha=alpha, use_rslora=rs)
    pm = PeftModel.from_pretrained(copy.deepcopy(pico), str(dirs["a0"]), adapter_name="a0")
    for name in list(SOURCES)[1:]:
        pm.load_adapter(str(dirs[name]), adapter_name=name)
    loom = {name: load_peft(d) for name, d in dirs.items()}
    return pm, loom, dirs


def peft_merge(pm, names, weights, combination_type, **kw) -> dict[str, torch.Tensor]:
    """Run PEFT's add_weighted_adapter under a fresh name; return its deltas by module path."""
    from peft.tuners.lora import LoraLayer

    new = f"m{len(pm.peft_config)}"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # density >= 1 warns that nothing is pruned
        pm.add_weighted_adapter(names, weights, new, combination_type=combination_type, **kw)
    out = {}
    for path, mod in pm.base_model.model.named_modules():
        if isinstance(mod, LoraLayer) and new in mod.lora_A:
            out[path] = mod.get_delta_weight(new).detach().double()
    return out


@pytest.mark.parametrize("names, weights", [(["a0", "a2"], [0.7, -1.3]), (["a0", "a1", "a2"], [1.0, 0.5, 2.0])])
def test_cat_equals_peft_cat_and_the_exact_weighted_sum(setup, names, weights):
    pm, loom, _ = setup
    ours = merge([loom[n] for n in names], "cat", weights=weights)
    exact = weighted_delta([loom[n] for n in names], weights)
    assert max_rel_err(deltas64(ours), exact) < 1e-6
    assert max_rel_err(deltas64(ours), peft_merge(pm, names, weights, "cat")) < 1e-6


@pytest.mark.parametrize(
    "method, kw",
    [
        ("svd", {"svd_rank": 3}),
        ("ties_svd", {"svd_rank": 4, "density": 0.5}),
        ("ties_svd", {"svd_rank": 2, "density": 0.3, "majority_sign_method": "frequency"}),
        ("magnitude_prune_svd", {"svd_rank": 4, "density": 0.3}),
        ("dare_linear_svd", {"svd_rank": 3, "density": 1.0}),
        ("dare_ties_svd", {"svd_rank": 3, "density": 1.0}),
    ],
)
def test_svd_family_matches_peft(setup, method, kw):
    pm, loom, _ = setup
    names, weights = ["a0", "a1", "a2"], [0.8, -0.6, 1.5]
    ours = merge([loom[n] for n in names], method, weights=weights, params=kw)
    theirs = peft_merge(pm, names, weights, method, **kw)
    assert max_rel_err(deltas64(ours), theirs) < 1e-4


def test_rslora_inputs_cat_is_exact_and_peft_before_0_22_is_sqrt_r_too_large(setup):
    """Loom's cat of rsLoRA adapters is the exact weighted sum of deltas. PEFT before 0.22 kept use_rslora on the
    merged config (runtime scaling r'/sqrt(r') = sqrt(r'), so its result was sqrt(r') too large); 0.22 fixed it,
    and then the two agree."""
    from packaging.version import Version

    pm, loom, _ = setup
    names, weights = ["rs0", "rs1"], [1.0, 0.5]
    exact = weighted_delta([loom[n] for n in names], weights)
    ours = merge([loom[n] for n in names], "cat", weights=weights)
    assert max_rel_err(deltas64(ours), exact) < 1e-6
    fixed = Version(peft.__version__) >= Version("0.22")
    theirs = peft_merge(pm, names, weights, "cat")
    r_new = 4 + 2
    factor = 1.0 if fixed else math.sqrt(r_new)
    assert max_rel_err(theirs, {m: factor * d for m, d in exact.items()}) < 1e-6
    # and the svd path: the same factor sqrt(svd_rank) before 0.22
    ours_svd = merge([loom[n] for n in names], "svd", weights=weights, params={"svd_rank": 3})
    theirs_svd = peft_merge(pm, names, weights, "svd", svd_rank=3)
    factor = 1.0 if fixed else math.sqrt(3)
    assert max_rel_err(theirs_svd, {m: factor * d for m, d in deltas64(ours_svd).items()}) < 1e-4


def test_linear_is_the_weighted_sum_peft_linear_has_cross_terms(setup):
    pm, loom, _ = setup
    names, weights = ["a0", "a1"], [1.0, -1.0]
    exact = weighted_delta([loom[n] for n in names], weights)
    ours = merge([loom[n] for n in names], "linear", weights=weights)
    assert max_rel_err(deltas64(ours), exact) < 1e-6
    assert max_rel_err(peft_merge(pm, names, weights, "linear"), exact) > 0.3  # cross terms B_i A_j
    # with one adapter PEFT is right too, and both agree
    single = merge([loom["a0"]], "linear", weights=[0.5])
    assert max_rel_err(deltas64(single), peft_merge(pm, ["a0"], [0.5], "linear")) < 1e-6


@pytest.mark.parametrize(
    "method, kw, definition",
    [
        ("ties", {"density": 0.5}, lambda d, w: merge_utils.ties(d, w, 0.5, "total")),
        ("magnitude_prune", {"density": 0.4}, lambda d, w: merge_utils.magnitude_prune(d, w, 0.4)),
        ("dare_linear", {"density": 1.0}, lambda d, w: merge_utils.task_arithmetic(d, w)),
        ("dare_ties", {"density": 1.0}, lambda d, w: merge_utils.ties(d, w, 1.0, "total")),
    ],
)
def test_factor_space_methods_differ_from_peft_by_design(setup, method, kw, definition):
    """Loom's result is the definition applied to the true deltas (best rank-sum(r) fit); PEFT's is not."""
    pm, loom, _ = setup
    names, weights = ["a0", "a1"], [1.0, 0.7]
    ads = [loom[n] for n in names]
    dense = {
        m: definition([ad.layers[m].delta(torch.float64) for ad in ads], torch.tensor(weights, dtype=torch.float64))
        for m in ads[0].layers
    }
    ours = merge(ads, method, weights=weights, params=kw)
    ranked = {}  # the definition's best rank-8 approximation (Loom exports at rank 4 + 4)
    for m, d in dense.items():
        u, s, vh = torch.linalg.svd(d)
        ranked[m] = (u[:, :8] * s[:8]) @ vh[:8]
    assert max_rel_err(deltas64(ours), ranked) < 1e-4
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        theirs = peft_merge(pm, names, weights, method, **kw)
    assert max_rel_err(theirs, dense) > 0.2


def test_merged_adapter_saves_and_loads_in_peft_with_the_exact_logits(setup, pico, tmp_path):
    """A cat merge written by save_peft and loaded by PEFT gives the logits of base + sum of deltas."""
    _, loom, _ = setup
    ads, weights = [loom["a0"], loom["rs1"]], [0.6, 1.0]
    out = save_peft(merge(ads, "cat", weights=weights, names=["x/a0", "x/rs1"]), tmp_path / "merged")
    ids = torch.tensor([[1, 5, 9, 3, 7, 2]])
    ref = copy.deepcopy(pico)
    mods = dict(ref.named_modules())
    with torch.no_grad():
        for m, d in weighted_delta(ads, weights).items():
            mods[m].weight += d.float()
        expected = ref(input_ids=ids).logits
    torch.testing.assert_close(peft_logits(pico, out, ids), expected, atol=1e-5, rtol=1e-4)
