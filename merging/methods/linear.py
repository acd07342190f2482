"""``linear`` and ``svd``: task arithmetic on the true deltas, re-factored exactly or truncated.

Task Arithmetic (Ilharco et al., 2023): https://arxiv.org/abs/2212.04089

Both compute ``D = sum_i w_i s_i B_i A_i`` per module and re-factor it with the exact QR trick of
spec merging.md §2.1 (QR of the concatenated factors, SVD of a small P x P core; the dense
``out x in`` matrix is never formed):

* ``linear`` keeps every non-zero singular value: the result *is* ``D`` (rank <= sum r_i), with
  orthogonal, balanced factors. **Deliberate difference from PEFT**: PEFT's ``linear`` combines A
  and B separately (``A' = sum u_i A_i``, ``B' = sum v_i B_i``), which adds cross terms
  ``v_i u_j B_i A_j`` and is not the weighted sum (relative error ~0.9 for weights [1, -1]);
  Loom's ``linear`` equals the delta-space definition. Optional ``rank`` truncates.
* ``svd`` truncates to ``svd_rank`` (default: the largest input rank), PEFT's ``svd`` type. PEFT
  0.21 applies each scaling once (the double scaling of older snapshots is fixed), but with
  ``use_rslora`` inputs its result inherits rsLoRA and is sqrt(r') too large; Loom's runtime
  scaling is always 1.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.core.adapter import LoraAdapter, LoraLayer
from hub.core.provenance import Provenance
from merging.config import MethodConfig, check_range, param
from merging.factors import fold, merged_spec, modules_of, present, refactor_sum, summarize, unit_layer
from merging.spec import MergeMethod

TA_PAPER = "https://arxiv.org/abs/2212.04089"


@dataclass(frozen=True)
class LinearConfig(MethodConfig):
    """``rank``: truncate the exact sum to this rank (default: keep it exact)."""

    rank: int | None = param(None, "truncate to this rank per module; default: exact (rank <= sum of ranks)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.rank is not None:
            check_range("rank", self.rank, 1)


@dataclass(frozen=True)
class SvdConfig(MethodConfig):
    """``svd_rank``: output rank (default: the largest input rank in each module)."""

    svd_rank: int | None = param(None, "output rank; default: the largest input rank in each module (PEFT's)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.svd_rank is not None:
            check_range("svd_rank", self.svd_rank, 1)


def weighted_sum_adapter(
    adapters: Sequence[LoraAdapter], weights: list[float], rank: int | None, default_max: bool
) -> LoraAdapter:
    """``sum_i w_i s_i B_i A_i`` per module, exactly re-factored, truncated to ``rank`` if given."""
    dtype = adapters[0].dtype
    layers: dict[str, LoraLayer] = {}
    energies: list[float] = []
    for module in modules_of(adapters):
        here = present(adapters, weights, module)
        folded = [fold(p.layer, p.weight) for p in here]
        r = rank if rank is not None else (max(p.layer.rank for p in here) if default_max else None)
        rf = refactor_sum([f[0] for f in folded], [f[1] for f in folded], r)
        layers[module] = unit_layer(rf.a, rf.b, dtype)
        energies.append(rf.energy)
    report = summarize([la.rank for la in layers.values()], energies)
    return LoraAdapter(layers=layers, spec=merged_spec(adapters), provenance=Provenance.create("report", report))


def linear(adapters: Sequence[LoraAdapter], config: LinearConfig) -> LoraAdapter:
    """Exact weighted sum of the true deltas (task arithmetic), re-factored without cross terms."""
    return weighted_sum_adapter(adapters, config.weights_for(len(adapters)), config.rank, default_max=False)


def svd(adapters: Sequence[LoraAdapter], config: SvdConfig) -> LoraAdapter:
    """Weighted sum of the true deltas truncated by SVD to ``svd_rank`` (PEFT's ``svd`` type)."""
    return weighted_sum_adapter(adapters, config.weights_for(len(adapters)), config.svd_rank, default_max=True)


LINEAR = MergeMethod("linear", linear, LinearConfig, paper=TA_PAPER)
SVD = MergeMethod("svd", svd, SvdConfig, paper=TA_PAPER)
