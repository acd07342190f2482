"""Task-vector arithmetic on dense deltas: trim, random drop, sign election, disjoint mean.

These are the TIES / DARE building blocks (spec merging.md §2.1, §2.2.4), written for Loom and
applied to the *true* dense deltas ``s_i B_i A_i`` of one module. Semantics follow PEFT's
``merge_utils`` so that ``ties_svd`` & co. match ``peft.add_weighted_adapter`` where PEFT is right:

* trim keeps the top ``floor(density * numel)`` entries by magnitude within each delta;
* the sign is elected on the **unweighted** pruned deltas ("total": sign of the sum,
  "frequency": sign of the sum of signs; ties go to +), then the weights are applied;
* the disjoint mean divides by the number of agreeing non-zero entries (at least 1);
* DARE keeps each entry with probability ``density`` and rescales survivors by ``1 / density``.

Everything but the trim threshold is elementwise across adapters, so :mod:`merging.dense` runs it
on blocks of rows: a :class:`Trim` is measured once on the whole delta, then applied block by block.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch

SignMethod = Literal["total", "frequency"]


@dataclass
class Trim:
    """Top-k by magnitude of one delta, applied to row blocks in order.

    Exactly ``k`` entries are kept: those above the k-th largest magnitude (found by selection,
    O(n), faster than a top-k sort on 4096 x 4096) plus the first entries, in row-major order,
    equal to it.
    """

    threshold: float
    ties_left: int

    @classmethod
    def measure(cls, delta: torch.Tensor, density: float) -> Trim:
        n = delta.numel()
        k = int(density * n)
        if k <= 0:
            return cls(threshold=float("inf"), ties_left=0)
        mags = delta.abs().reshape(-1)
        if mags.device.type == "cpu":
            t = mags.kthvalue(n - k + 1).values
        else:
            t = torch.topk(mags, k).values[-1]
        return cls(threshold=float(t), ties_left=k - int((mags > t).sum()))

    def apply(self, block: torch.Tensor) -> torch.Tensor:
        """The block with the entries outside the top k zeroed (call on consecutive row blocks)."""
        mags = block.abs()
        keep = mags > self.threshold
        if self.ties_left > 0:
            flat = keep.reshape(-1)
            tied = torch.nonzero((mags == self.threshold).reshape(-1)).reshape(-1)[: self.ties_left]
            flat[tied] = True
            self.ties_left -= int(tied.numel())
        return block * keep


def trim(t: torch.Tensor, density: float) -> torch.Tensor:
    """Zero all but the top ``floor(density * numel)`` entries of ``t`` by magnitude."""
    if density >= 1.0:
        return t
    return Trim.measure(t, density).apply(t)


def drop(t: torch.Tensor, density: float, generator: torch.Generator) -> torch.Tensor:
    """DARE: keep each entry with probability ``density``, rescale survivors by ``1 / density``."""
    if density >= 1.0:
        return t
    keep = torch.rand(t.shape, generator=generator, device=t.device, dtype=torch.float32) < density
    return t * keep / density


def weighted_sum(deltas: Sequence[torch.Tensor], weights: Sequence[float]) -> torch.Tensor:
    """Task arithmetic: ``sum_i w_i D_i``."""
    out = torch.zeros_like(deltas[0])
    for d, w in zip(deltas, weights, strict=True):
        out.add_(d, alpha=float(w))
    return out


def ties_combine(pruned: Sequence[torch.Tensor], weights: Sequence[float], sign: SignMethod) -> torch.Tensor:
    """TIES after pruning: elect a sign on the unweighted deltas, then the weighted disjoint mean.

    Accumulates adapter by adapter (no (N, rows, in) stack): the elected sign is + where the
    "total" (sum) or "frequency" (sum of signs) mass is >= 0; an entry agrees when its sign equals
    it (zeros never do); the result is sum(w_i * agreeing entries) / max(1, number agreeing).
    """
    mass = torch.zeros_like(pruned[0])  # (rows, in)
    for p in pruned:
        mass += p if sign == "total" else p.sign()
    positive = mass >= 0
    num = torch.zeros_like(pruned[0])  # (rows, in)
    count = torch.zeros_like(pruned[0])  # (rows, in)
    for p, w in zip(pruned, weights, strict=True):
        agree = torch.where(positive, p > 0, p < 0)
        num.addcmul_(p, agree, value=float(w))
        count += agree
    return num / count.clamp_min(1)
