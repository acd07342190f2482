"""The dense-delta driver: prune and combine the true deltas of each module, then re-factor.

Used by every method that needs the delta space (TIES, DARE, magnitude pruning). A :class:`Recipe`
says how: ``prune`` each delta (``none``, ``magnitude`` = TIES trim, ``random`` = DARE drop and
rescale) and ``combine`` them (``sum`` = weighted sum, ``ties`` = sign election and disjoint
mean). Module by module, the deltas ``D_i = s_i B_i A_i`` are streamed in blocks of
:data:`BLOCK_ROWS` rows, so memory stays at one dense matrix per module plus a block per adapter
(a 4096 x 4096 TIES of 8 adapters peaks near 0.2 GB instead of ~3 GB for whole stacked deltas).
The result is re-factored by truncated SVD with runtime scaling 1 (spec merging.md §1.3, §2.1).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from hub.core.adapter import LoraAdapter, LoraLayer
from hub.core.errors import InvalidInputError
from hub.core.provenance import Provenance
from merging.config import MethodConfig, check_range, param
from merging.factors import merged_spec, modules_of, present, refactor_dense, summarize, unit_layer
from merging.taskvec import SignMethod, Trim, drop, ties_combine, weighted_sum

#: Rows of every delta processed at once (fixed: the DARE mask stream depends on it).
BLOCK_ROWS = 512

SVD_RANK_DOC = "output rank; default: the largest input rank in each module (PEFT's)"
DENSITY_DOC = "fraction of entries kept in each delta, in (0, 1]"
SIGN_DOC = "sign election: 'total' (sign of the sum) or 'frequency' (sign of the sum of signs)"


@dataclass(frozen=True)
class DenseConfig(MethodConfig):
    """Export settings shared by the dense methods (the rank rule is per method)."""

    svd_solver: str = param("full", "'full' (exact truncated SVD) or 'randomized' (seeded, faster at 4096x4096)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.svd_solver not in ("full", "randomized"):
            raise InvalidInputError(
                f"svd_solver must be 'full' or 'randomized', got {self.svd_solver!r}", field="svd_solver"
            )


def check_common(density: float | None = None, sign: str | None = None, svd_rank: int | None = None) -> None:
    """Validate the params the dense methods share; errors name the field and the value."""
    if density is not None:
        check_range("density", density, 0.0, 1.0, lo_open=True)
    if sign is not None and sign not in ("total", "frequency"):
        raise InvalidInputError(
            f"majority_sign_method must be 'total' or 'frequency', got {sign!r}", field="majority_sign_method"
        )
    if svd_rank is not None:
        check_range("svd_rank", svd_rank, 1)


def max_rank(ranks: Sequence[int]) -> int:
    """Default rank rule of the ``*_svd`` forms: the largest input rank (PEFT's)."""
    return max(ranks)


def rank_rule(svd_form: bool, svd_rank: int | None) -> Callable[[list[int]], int]:
    """``*_svd`` forms: ``svd_rank`` or the largest input rank; plain forms: the sum of input ranks."""
    if not svd_form:
        return sum
    if svd_rank is not None:
        return lambda _ranks: svd_rank
    return max_rank


@dataclass(frozen=True)
class Recipe:
    """How to prune and combine the deltas of one module."""

    prune: str = "none"  # none | magnitude | random
    density: float = 1.0
    combine: str = "sum"  # sum | ties
    sign: SignMethod = "total"
    seed: int = 0


def _block(layer: LoraLayer, r0: int, r1: int, device: torch.device) -> torch.Tensor:
    """Rows r0:r1 of the true delta ``s B A`` in float32, shape (r1 - r0, in)."""
    return (layer.scaling * (layer.b[r0:r1].float() @ layer.a.float())).to(device)


def _merge_module(layers: list[LoraLayer], weights: list[float], recipe: Recipe,
                  gen: torch.Generator) -> torch.Tensor:
    device = layers[0].a.device
    out_f, in_f = layers[0].out_features, layers[0].in_features
    trims: list[Trim | None] = [None] * len(layers)
    if recipe.prune == "magnitude" and recipe.density < 1.0:
        trims = [Trim.measure(la.delta(torch.float32), recipe.density) for la in layers]  # one at a time
    out = torch.empty(out_f, in_f, dtype=torch.float32, device=device)  # (out, in)
    for r0 in range(0, out_f, BLOCK_ROWS):
        r1 = min(out_f, r0 + BLOCK_ROWS)
        blocks = [_block(la, r0, r1, device) for la in layers]  # N x (rows, in)
        if recipe.prune == "magnitude":
            blocks = [t.apply(b) if t is not None else b for t, b in zip(trims, blocks, strict=True)]
        elif recipe.prune == "random":
            blocks = [drop(b, recipe.density, gen) for b in blocks]
        if recipe.combine == "ties":
            out[r0:r1] = ties_combine(blocks, weights, recipe.sign)
        else:
            out[r0:r1] = weighted_sum(blocks, weights)
    return out


def dense_merge(
    adapters: Sequence[LoraAdapter],
    config: MethodConfig,
    recipe: Recipe,
    rank_for: Callable[[list[int]], int],
    *,
    svd_solver: str = "full",
) -> LoraAdapter:
    """Prune and combine the true deltas module by module; re-factor each to ``rank_for(input ranks)``.

    The report (attached as provenance, see :mod:`merging.registry`) holds the output rank range
    and the kept SVD energy.
    """
    weights = config.weights_for(len(adapters))
    dtype = adapters[0].dtype
    gen = torch.Generator(device=next(iter(adapters[0].layers.values())).a.device)
    gen.manual_seed(recipe.seed)
    layers: dict[str, LoraLayer] = {}
    ranks: list[int] = []
    energies: list[float] = []
    for module in modules_of(adapters):
        here = present(adapters, weights, module)
        combined = _merge_module([p.layer for p in here], [p.weight for p in here], recipe, gen)  # (out, in)
        rf = refactor_dense(combined, rank_for([p.layer.rank for p in here]), svd_solver, recipe.seed)
        del combined
        layers[module] = unit_layer(rf.a, rf.b, dtype)
        ranks.append(int(rf.a.shape[0]))
        energies.append(rf.energy)
    report = summarize(ranks, energies)
    return LoraAdapter(layers=layers, spec=merged_spec(adapters), provenance=Provenance.create("report", report))
