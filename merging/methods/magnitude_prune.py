"""``magnitude_prune`` and ``magnitude_prune_svd``: TIES's trim step, then a weighted sum.

Magnitude pruning of task vectors, the trim step of TIES-Merging: https://arxiv.org/abs/2306.01708

Per module, each true delta ``D_i = s_i B_i A_i`` keeps its top ``density`` fraction of entries by
magnitude; the pruned deltas are summed with the weights (no sign election). The result is
re-factored by truncated SVD with runtime scaling 1: ``magnitude_prune_svd`` to ``svd_rank``
(default: the largest input rank; equals PEFT's ``magnitude_prune_svd``), ``magnitude_prune`` to
the sum of input ranks. **Deliberate difference from PEFT**: PEFT's ``magnitude_prune`` prunes A
and B separately (cross terms); Loom's is the delta-space definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from hub.core.adapter import LoraAdapter
from merging.config import param
from merging.dense import DENSITY_DOC, SVD_RANK_DOC, DenseConfig, Recipe, check_common, dense_merge, rank_rule
from merging.spec import MergeMethod

PAPER = "https://arxiv.org/abs/2306.01708"


@dataclass(frozen=True)
class MagnitudePruneConfig(DenseConfig):
    """Magnitude pruning params: the density kept per delta."""

    density: float = param(0.2, DENSITY_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(density=self.density)


@dataclass(frozen=True)
class MagnitudePruneSvdConfig(MagnitudePruneConfig):
    """Magnitude pruning params plus ``svd_rank``."""

    svd_rank: int | None = param(None, SVD_RANK_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(svd_rank=self.svd_rank)


def magnitude_prune(adapters: Sequence[LoraAdapter], config: MagnitudePruneConfig) -> LoraAdapter:
    """Trim each true delta by magnitude, weighted sum, exported at rank sum r_i."""
    recipe = Recipe(prune="magnitude", density=config.density, combine="sum")
    return dense_merge(adapters, config, recipe, rank_rule(False, None), svd_solver=config.svd_solver)


def magnitude_prune_svd(adapters: Sequence[LoraAdapter], config: MagnitudePruneSvdConfig) -> LoraAdapter:
    """Trim each true delta by magnitude, weighted sum, truncated by SVD to ``svd_rank``."""
    recipe = Recipe(prune="magnitude", density=config.density, combine="sum")
    return dense_merge(adapters, config, recipe, rank_rule(True, config.svd_rank), svd_solver=config.svd_solver)


MAGNITUDE_PRUNE = MergeMethod("magnitude_prune", magnitude_prune, MagnitudePruneConfig, paper=PAPER)
MAGNITUDE_PRUNE_SVD = MergeMethod("magnitude_prune_svd", magnitude_prune_svd, MagnitudePruneSvdConfig, paper=PAPER)
