"""``dare_linear``, ``dare_ties`` and their ``_svd`` forms: DARE on the true deltas.

DARE, "Language Models are Super Mario" (Yu et al., ICML 2024): https://arxiv.org/abs/2311.03099

Per module, each true delta ``D_i = s_i B_i A_i`` keeps every entry with probability ``density``
(drawn from a generator seeded with ``seed``, so a recipe is reproducible) and rescales survivors
by ``1 / density`` so the expectation is ``D_i``. ``dare_linear`` then takes the weighted sum,
``dare_ties`` the TIES sign election and disjoint mean (no trimming). The dense result is
re-factored by truncated SVD with runtime scaling 1: the ``_svd`` forms to ``svd_rank`` (default:
the largest input rank; PEFT's ``dare_*_svd``, which draws its mask from the global RNG), the
plain forms to the sum of input ranks. **Deliberate difference from PEFT**: PEFT's plain
``dare_linear`` / ``dare_ties`` drop entries of A and B separately (cross terms, no expectation
guarantee); Loom's are the delta-space definition.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from hub.core.adapter import LoraAdapter
from merging.config import check_range, param
from merging.dense import (
    DENSITY_DOC,
    SIGN_DOC,
    SVD_RANK_DOC,
    DenseConfig,
    Recipe,
    check_common,
    dense_merge,
    rank_rule,
)
from merging.spec import MergeMethod
from merging.taskvec import SignMethod

PAPER = "https://arxiv.org/abs/2311.03099"


@dataclass(frozen=True)
class DareLinearConfig(DenseConfig):
    """DARE params: keep probability and the seed of the drop mask."""

    density: float = param(0.1, DENSITY_DOC + "; survivors are rescaled by 1/density")
    seed: int = param(0, "seed of the random drop mask (same seed, same result)")

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(density=self.density)
        check_range("seed", self.seed, 0)


@dataclass(frozen=True)
class DareTiesConfig(DareLinearConfig):
    """DARE params plus the sign election method."""

    majority_sign_method: str = param("total", SIGN_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(sign=self.majority_sign_method)


@dataclass(frozen=True)
class DareLinearSvdConfig(DareLinearConfig):
    """DARE-linear params plus ``svd_rank``."""

    svd_rank: int | None = param(None, SVD_RANK_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(svd_rank=self.svd_rank)


@dataclass(frozen=True)
class DareTiesSvdConfig(DareTiesConfig):
    """DARE-TIES params plus ``svd_rank``."""

    svd_rank: int | None = param(None, SVD_RANK_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(svd_rank=self.svd_rank)


def _run(adapters: Sequence[LoraAdapter], config: DareLinearConfig, ties: bool, svd_form: bool,
         svd_rank: int | None) -> LoraAdapter:
    sign = cast(SignMethod, getattr(config, "majority_sign_method", "total"))
    recipe = Recipe(prune="random", density=config.density, combine="ties" if ties else "sum", sign=sign,
                    seed=config.seed)
    return dense_merge(adapters, config, recipe, rank_rule(svd_form, svd_rank), svd_solver=config.svd_solver)


def dare_linear(adapters: Sequence[LoraAdapter], config: DareLinearConfig) -> LoraAdapter:
    """DARE drop-and-rescale on the true deltas, weighted sum, exported at rank sum r_i."""
    return _run(adapters, config, ties=False, svd_form=False, svd_rank=None)


def dare_ties(adapters: Sequence[LoraAdapter], config: DareTiesConfig) -> LoraAdapter:
    """DARE drop-and-rescale on the true deltas, TIES sign election, exported at rank sum r_i."""
    return _run(adapters, config, ties=True, svd_form=False, svd_rank=None)


def dare_linear_svd(adapters: Sequence[LoraAdapter], config: DareLinearSvdConfig) -> LoraAdapter:
    """DARE-linear on the true deltas truncated by SVD to ``svd_rank`` (PEFT's ``dare_linear_svd``)."""
    return _run(adapters, config, ties=False, svd_form=True, svd_rank=config.svd_rank)


def dare_ties_svd(adapters: Sequence[LoraAdapter], config: DareTiesSvdConfig) -> LoraAdapter:
    """DARE-TIES on the true deltas truncated by SVD to ``svd_rank`` (PEFT's ``dare_ties_svd``)."""
    return _run(adapters, config, ties=True, svd_form=True, svd_rank=config.svd_rank)


DARE_LINEAR = MergeMethod("dare_linear", dare_linear, DareLinearConfig, paper=PAPER)
DARE_TIES = MergeMethod("dare_ties", dare_ties, DareTiesConfig, paper=PAPER)
DARE_LINEAR_SVD = MergeMethod("dare_linear_svd", dare_linear_svd, DareLinearSvdConfig, paper=PAPER)
DARE_TIES_SVD = MergeMethod("dare_ties_svd", dare_ties_svd, DareTiesSvdConfig, paper=PAPER)
