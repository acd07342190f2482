"""``cat``: exact weighted sum of the adapters by concatenating their ranks.

PR huggingface/peft#817 (PEFT's ``combination_type="cat"``): https://github.com/huggingface/peft/pull/817

For every module, the folded factors of the adapters that adapt it are stacked:
``A' = vstack(A~_i)`` (sum r_i, in) and ``B' = hstack(B~_i)`` (out, sum r_i), so
``B' A' = sum_i w_i s_i B_i A_i`` exactly. The output rank is the sum of the input ranks and the
runtime scaling is 1. Same result as PEFT's ``cat`` (which folds ``w_i s_i`` into A only); Loom
balances the scalars between A and B and, unlike PEFT with ``use_rslora`` inputs, does not keep
rsLoRA scaling on the result (PEFT's inherited ``use_rslora`` makes its result sqrt(r') too large).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hub.core.adapter import LoraAdapter, LoraLayer
from hub.core.provenance import Provenance
from merging.config import MethodConfig
from merging.factors import fold, merged_spec, modules_of, present, summarize, unit_layer
from merging.spec import MergeMethod


@dataclass(frozen=True)
class CatConfig(MethodConfig):
    """``cat`` has no params besides the weights."""


def cat(adapters: Sequence[LoraAdapter], config: CatConfig) -> LoraAdapter:
    """Exact weighted sum of deltas by rank concatenation (output rank = sum of input ranks)."""
    weights = config.weights_for(len(adapters))
    dtype = adapters[0].dtype
    layers: dict[str, LoraLayer] = {}
    for module in modules_of(adapters):
        folded = [fold(p.layer, p.weight) for p in present(adapters, weights, module)]
        a = torch.cat([f[0] for f in folded], dim=0)  # (sum r, in)
        b = torch.cat([f[1] for f in folded], dim=1)  # (out, sum r)
        layers[module] = unit_layer(a, b, dtype)
    report = summarize([la.rank for la in layers.values()])
    return LoraAdapter(layers=layers, spec=merged_spec(adapters), provenance=Provenance.create("report", report))


CAT = MergeMethod("cat", cat, CatConfig, paper="https://github.com/huggingface/peft/pull/817")
