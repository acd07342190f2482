"""Factor bookkeeping shared by the methods: folding scalars, aligning modules, re-factoring deltas.

Conventions (spec merging.md §1.2-1.3):

* **Folding.** Adapter *i* with user weight ``w`` and scaling ``s`` contributes the true delta
  ``w * s * B @ A``. Folded factors carry all scalars, balanced, sign on A only:
  ``A~ = sgn(w s) sqrt(|w s|) A`` and ``B~ = sqrt(|w s|) B`` so ``B~ @ A~ = w s B A``.
* **Export.** Every produced layer has runtime scaling exactly 1: ``alpha = r'`` and
  ``use_rslora = False`` (PEFT before 0.22 inherited ``use_rslora``: the √r' overscaling bug).
* **Re-factoring** a dense delta keeps the top ``r'`` singular triplets and splits ``sqrt(sigma)``
  evenly between B and A; a sum of LoRAs is re-factored exactly without forming the dense matrix
  (QR of the concatenated factors, then the SVD of a small P x P core).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec

#: Dense SVDs of matrices up to this many entries run in float64; larger ones in float32.
FLOAT64_SVD_MAX_NUMEL = 262_144


@dataclass(frozen=True)
class Present:
    """One input adapter's layer in a module: its index, user weight and LoRA layer."""

    index: int
    weight: float
    layer: LoraLayer


def modules_of(adapters: Sequence[LoraAdapter]) -> list[str]:
    """The union of the adapters' module paths, sorted (PEFT's policy: absent adapters are skipped)."""
    return sorted({m for ad in adapters for m in ad.layers})


def present(adapters: Sequence[LoraAdapter], weights: Sequence[float], module: str) -> list[Present]:
    """The adapters that adapt ``module``, in input order."""
    return [
        Present(i, float(w), ad.layers[module])
        for i, (ad, w) in enumerate(zip(adapters, weights, strict=True))
        if module in ad.layers
    ]


def fold(layer: LoraLayer, weight: float, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """Folded factors ``(A~ (r, in), B~ (out, r))`` with ``B~ @ A~ = weight * scaling * B @ A``."""
    c = weight * layer.scaling
    root = math.sqrt(abs(c))
    sign = 1.0 if c >= 0 else -1.0
    return layer.a.to(dtype) * (sign * root), layer.b.to(dtype) * root


def merged_spec(adapters: Sequence[LoraAdapter]) -> LoraSpec:
    """The spec of a merge result: base model and task type of the inputs, scaling mode plain.

    ``target_modules`` is dropped from the kept config so the writer recomputes it as the union.
    """
    first = adapters[0].spec
    base = next((a.base_model for a in adapters if a.base_model), None)
    extra = tuple((k, v) for k, v in first.extra_config if k != "target_modules")
    return LoraSpec(
        base_model=base,
        base_revision=first.base_revision,
        use_rslora=False,
        task_type=first.task_type,
        extra_config=extra,
    )


def unit_layer(a: torch.Tensor, b: torch.Tensor, dtype: torch.dtype) -> LoraLayer:
    """A layer with runtime scaling 1 (``alpha = r``) from factors ``a (r, in)``, ``b (out, r)``."""
    r = int(a.shape[0])
    return LoraLayer(a=a.to(dtype).contiguous(), b=b.to(dtype).contiguous(), alpha=float(r), use_rslora=False)


def _split(u: torch.Tensor, s: torch.Tensor, vh: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    root = torch.sqrt(s.clamp_min(0))
    return root[:, None] * vh, u * root[None, :]  # a (r, in), b (out, r)


@dataclass(frozen=True)
class Refactored:
    """A re-factored delta: factors with scaling 1 and what the truncation kept."""

    a: torch.Tensor  # (r', in)
    b: torch.Tensor  # (out, r')
    energy: float  # sum of kept sigma^2 / sum of all sigma^2 (1.0 for a zero delta)


def _energy(s: torch.Tensor, rank: int) -> float:
    total = float((s.double() ** 2).sum())
    return 1.0 if total == 0.0 else float((s[:rank].double() ** 2).sum()) / total


def refactor_dense(
    delta: torch.Tensor, rank: int, solver: str = "full", seed: int = 0
) -> Refactored:
    """Best rank-``rank`` factors of a dense delta (out, in) by truncated SVD.

    ``solver="full"`` is exact (float64 for small matrices); ``"randomized"`` uses a seeded
    randomized range finder with 4 power iterations (Halko et al.), much faster for 4096 x 4096.
    """
    rank = max(1, min(rank, min(delta.shape)))
    if solver == "randomized" and rank + 8 < min(delta.shape):
        return _refactor_randomized(delta.float(), rank, seed)
    dt = torch.float64 if delta.numel() <= FLOAT64_SVD_MAX_NUMEL else torch.float32
    u, s, vh = torch.linalg.svd(delta.to(dt), full_matrices=False)
    a, b = _split(u[:, :rank], s[:rank], vh[:rank])
    return Refactored(a=a, b=b, energy=_energy(s, rank))


def _refactor_randomized(delta: torch.Tensor, rank: int, seed: int) -> Refactored:
    out_f, in_f = delta.shape
    q = min(rank + 8, min(out_f, in_f))
    g = torch.Generator(device=delta.device).manual_seed(seed)
    omega = torch.randn(in_f, q, generator=g, device=delta.device, dtype=delta.dtype)  # (in, q)
    basis, _ = torch.linalg.qr(delta @ omega)  # (out, q)
    for _ in range(4):  # power iterations sharpen the spectrum
        z, _ = torch.linalg.qr(delta.T @ basis)  # (in, q)
        basis, _ = torch.linalg.qr(delta @ z)  # (out, q)
    small = basis.T @ delta  # (q, in)
    uc, s, vh = torch.linalg.svd(small, full_matrices=False)
    u = basis @ uc  # (out, q)
    a, b = _split(u[:, :rank], s[:rank], vh[:rank])
    total = float((delta.double() ** 2).sum())
    kept = float((s[:rank].double() ** 2).sum())
    return Refactored(a=a, b=b, energy=1.0 if total == 0.0 else min(1.0, kept / total))


def refactor_sum(
    a_list: Sequence[torch.Tensor], b_list: Sequence[torch.Tensor], rank: int | None = None
) -> Refactored:
    """Exact SVD factors of ``sum_i B_i @ A_i`` without the dense matrix (spec §2.1, QR trick).

    ``rank=None`` keeps every singular value above round-off (the exact sum, rank <= sum r_i);
    otherwise keeps the top ``rank``. Cost O((in + out) P^2 + P^3), P = sum of ranks.
    """
    a_cat = torch.cat([a.double() for a in a_list], dim=0)  # (P, in)
    b_cat = torch.cat([b.double() for b in b_list], dim=1)  # (out, P)
    q_b, r_b = torch.linalg.qr(b_cat)  # (out, p1), (p1, P)
    q_a, r_a = torch.linalg.qr(a_cat.T)  # (in, p2), (p2, P)
    uc, s, vch = torch.linalg.svd(r_b @ r_a.T, full_matrices=False)  # core (p1, p2)
    if rank is None:
        tol = float(s[0]) * max(a_cat.shape + b_cat.shape) * torch.finfo(torch.float64).eps if len(s) else 0.0
        keep = max(1, int((s > tol).sum()))
    else:
        keep = max(1, min(rank, len(s)))
    u = q_b @ uc[:, :keep]  # (out, keep)
    vh = vch[:keep] @ q_a.T  # (keep, in)
    a, b = _split(u, s[:keep], vh)
    return Refactored(a=a, b=b, energy=_energy(s, keep))


def summarize(ranks: Sequence[int], energies: Sequence[float] = ()) -> dict[str, object]:
    """A compact JSON report: output rank range and kept SVD energy (min and mean) over modules."""
    report: dict[str, object] = {"modules": len(ranks), "rank_min": min(ranks), "rank_max": max(ranks)}
    if energies:
        report["min_energy"] = round(min(energies), 6)
        report["mean_energy"] = round(sum(energies) / len(energies), 6)
    return report
