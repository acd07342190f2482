"""Method ``auto``: pick a merge method, its params and the weights, with a reason a person can read.

The composition service calls :func:`choose_method` when a request says ``"method": "auto"`` and
writes the reason into the job log. The rule is simple and documented rather than learned:

1. one adapter: ``linear`` with weight 1 (the adapter itself);
2. the sum of ranks fits ``max_cat_rank``: ``cat``, the exact weighted sum (nothing is lost);
3. otherwise, if some pair of adapters conflicts (cosine of their deltas below ``conflict_cos``):
   ``ties_svd``, whose sign election resolves the conflicting entries;
4. otherwise ``lora_lego`` with k = the largest input rank: compact, merges redundant rank-1 units.

Weights are the ones given (negative ones clipped to 0): for a task, the composition service gives the
retrieval's weights, ``softmax(similarity / T)``, which already sum to 1; for listed sources, the request's
weights. They are normalised to sum 1 for ``cat`` (a weighted average), scaled to a maximum of 1 for TIES and
LoRA-LEGO (whose disjoint mean / centroids already average), and the reason says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError


class Choice(NamedTuple):
    """What ``auto`` picked: method name, params, one weight per adapter, and why."""

    method: str
    params: dict[str, Any]
    weights: list[float]
    reason: str


def delta_cosines(adapters: Sequence[LoraAdapter]) -> list[list[float]]:
    """Cosine similarity of the adapters' full deltas (all modules), without dense matrices.

    ``<s_i B_i A_i, s_j B_j A_j>_F = s_i s_j sum((B_i^T B_j) * (A_i A_j^T))`` per shared module.
    """
    n = len(adapters)
    gram = [[0.0] * n for _ in range(n)]
    for i in range(n):
        for j in range(i, n):
            total = 0.0
            for m, li in adapters[i].layers.items():
                lj = adapters[j].layers.get(m)
                if lj is None:
                    continue
                bb = li.b.float().T @ lj.b.float()  # (r_i, r_j)
                aa = li.a.float() @ lj.a.float().T  # (r_i, r_j)
                total += li.scaling * lj.scaling * float((bb * aa).sum())
            gram[i][j] = gram[j][i] = total
    norms = [max(gram[i][i], 0.0) ** 0.5 for i in range(n)]
    return [
        [gram[i][j] / (norms[i] * norms[j]) if norms[i] > 0 and norms[j] > 0 else 0.0 for j in range(n)]
        for i in range(n)
    ]


_SCALED = "weights are the given ones scaled so the largest is 1"


def _normalised(sims: Sequence[float], to: str) -> list[float]:
    clipped = [max(0.0, float(s)) for s in sims]
    if sum(clipped) == 0.0:
        clipped = [1.0] * len(sims)
    scale = sum(clipped) if to == "sum" else max(clipped)
    return [round(c / scale, 6) for c in clipped]


def choose_method(
    adapters: Sequence[LoraAdapter],
    task_similarities: Sequence[float] | None = None,
    *,
    max_cat_rank: int = 64,
    conflict_cos: float = -0.05,
) -> Choice:
    """Pick a method for ``adapters`` retrieved for a task, weighed by ``task_similarities`` (any non-negative
    weights; the composition service passes the retrieval's softmax weights).

    Raises:
        InvalidInputError: no adapters, or a different number of similarities than adapters.
    """
    n = len(adapters)
    if n == 0:
        raise InvalidInputError("auto needs at least one adapter")
    sims = list(task_similarities) if task_similarities is not None else [1.0] * n
    if len(sims) != n:
        raise InvalidInputError(f"task_similarities has {len(sims)} entries but {n} adapters were given")
    if n == 1:
        return Choice("linear", {}, [1.0], "one source adapter: linear with weight 1 returns it unchanged")
    rank_sums = {m: sum(ad.layers[m].rank for ad in adapters if m in ad.layers) for ad in adapters for m in ad.layers}
    total_rank = max(rank_sums.values())
    if total_rank <= max_cat_rank:
        return Choice(
            "cat", {}, _normalised(sims, "sum"),
            f"{n} adapters with total rank {total_rank} <= {max_cat_rank}: cat is the exact weighted sum, "
            "nothing is lost; weights are the given ones normalised to sum 1 (a task's softmax weights already are)",
        )
    cos = delta_cosines(adapters)
    worst = min(cos[i][j] for i in range(n) for j in range(i + 1, n))
    max_r = max(la.rank for ad in adapters for la in ad.layers.values())
    if worst < conflict_cos:
        return Choice(
            "ties_svd", {"density": 0.2, "svd_rank": max_r}, _normalised(sims, "max"),
            f"total rank {total_rank} > {max_cat_rank} and the deltas conflict (lowest pairwise cosine "
            f"{worst:.3f} < {conflict_cos}): ties_svd resolves sign conflicts, output rank {max_r}; {_SCALED}",
        )
    return Choice(
        "lora_lego", {"k": max_r}, _normalised(sims, "max"),
        f"total rank {total_rank} > {max_cat_rank} and no conflicting pair (lowest cosine {worst:.3f}): "
        f"lora_lego clusters the {total_rank} rank-1 units into k={max_r}; {_SCALED}",
    )
