"""``ties`` and ``ties_svd``: TIES-Merging on the true deltas, re-factored by truncated SVD.

TIES-Merging (Yadav et al., NeurIPS 2023): https://arxiv.org/abs/2306.01708

Per module: trim each true delta ``D_i = s_i B_i A_i`` to its top ``density`` fraction by
magnitude, elect a sign per entry on the trimmed deltas, then average (with the weights) only the
entries that agree with it (see :mod:`merging.taskvec` for the exact PEFT-compatible semantics).
The dense result is re-factored by truncated SVD with runtime scaling 1:

* ``ties_svd`` to ``svd_rank`` (default: the largest input rank) - equals PEFT's ``ties_svd``
  (PEFT 0.21; for ``use_rslora`` inputs PEFT's result is sqrt(r') too large, Loom's is not);
* ``ties`` to the sum of the input ranks. **Deliberate difference from PEFT**: PEFT's ``ties``
  runs TIES on A and B separately (a heuristic with no guarantee, "huge errors" per PR #3111);
  Loom's ``ties`` is the delta-space definition, exported at the rank a ``cat`` would have.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import cast

from hub.core.adapter import LoraAdapter
from merging.config import param
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

PAPER = "https://arxiv.org/abs/2306.01708"


@dataclass(frozen=True)
class TiesConfig(DenseConfig):
    """TIES params: density kept per delta and the sign election method."""

    density: float = param(0.2, DENSITY_DOC)
    majority_sign_method: str = param("total", SIGN_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(density=self.density, sign=self.majority_sign_method)


@dataclass(frozen=True)
class TiesSvdConfig(TiesConfig):
    """TIES params plus ``svd_rank``."""

    svd_rank: int | None = param(None, SVD_RANK_DOC)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_common(svd_rank=self.svd_rank)


def _recipe(config: TiesConfig) -> Recipe:
    return Recipe(prune="magnitude", density=config.density, combine="ties",
                  sign=cast(SignMethod, config.majority_sign_method))


def ties(adapters: Sequence[LoraAdapter], config: TiesConfig) -> LoraAdapter:
    """TIES on the true deltas, exported at rank sum r_i (not PEFT's factor-space heuristic)."""
    return dense_merge(adapters, config, _recipe(config), rank_rule(False, None), svd_solver=config.svd_solver)


def ties_svd(adapters: Sequence[LoraAdapter], config: TiesSvdConfig) -> LoraAdapter:
    """TIES on the true deltas, truncated by SVD to ``svd_rank`` (PEFT's ``ties_svd``)."""
    return dense_merge(adapters, config, _recipe(config), rank_rule(True, config.svd_rank),
                       svd_solver=config.svd_solver)


TIES = MergeMethod("ties", ties, TiesConfig, paper=PAPER)
TIES_SVD = MergeMethod("ties_svd", ties_svd, TiesSvdConfig, paper=PAPER)
