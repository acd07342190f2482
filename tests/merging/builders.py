"""Tiny LoRA adapters built in code for the merging tests (seeded, no files unless asked)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec

BASE = "loom-test/pico-llama"
SHAPES: dict[str, tuple[int, int]] = {  # module -> (out, in)
    "model.layers.0.self_attn.q_proj": (12, 16),
    "model.layers.0.self_attn.v_proj": (8, 16),
    "model.layers.1.self_attn.q_proj": (12, 16),
}


def rand_adapter(
    seed: int,
    rank: int | Mapping[str, int] = 4,
    alpha: float = 8.0,
    *,
    use_rslora: bool = False,
    shapes: Mapping[str, tuple[int, int]] = SHAPES,
    base: str = BASE,
    scale: float = 0.5,
) -> LoraAdapter:
    """A random adapter over ``shapes`` with non-zero A and B."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for m, (out_f, in_f) in shapes.items():
        r = rank if isinstance(rank, int) else rank[m]
        a = torch.randn(r, in_f, generator=g) * scale
        b = torch.randn(out_f, r, generator=g) * scale
        layers[m] = LoraLayer(a=a, b=b, alpha=alpha, use_rslora=use_rslora)
    return LoraAdapter(layers=layers, spec=LoraSpec(base_model=base, use_rslora=use_rslora))


def from_factors(pairs: Mapping[str, tuple[Sequence, Sequence]], alpha: float | None = None) -> LoraAdapter:
    """An adapter from literal (A, B) lists; alpha defaults to the rank (scaling 1)."""
    layers = {}
    for m, (a, b) in pairs.items():
        ta, tb = torch.tensor(a, dtype=torch.float32), torch.tensor(b, dtype=torch.float32)
        layers[m] = LoraLayer(a=ta, b=tb, alpha=float(alpha if alpha is not None else ta.shape[0]))
    return LoraAdapter(layers=layers, spec=LoraSpec(base_model=BASE))


def permute_ranks(adapter: LoraAdapter, seed: int) -> LoraAdapter:
    """The same adapter with the ranks of every layer permuted (rows of A, columns of B)."""
    g = torch.Generator().manual_seed(seed)
    layers = {}
    for m, la in adapter.layers.items():
        p = torch.randperm(la.rank, generator=g)
        layers[m] = LoraLayer(a=la.a[p].clone(), b=la.b[:, p].clone(), alpha=la.alpha, use_rslora=la.use_rslora)
    return LoraAdapter(layers=layers, spec=adapter.spec)


def weighted_delta(adapters: Sequence[LoraAdapter], weights: Sequence[float]) -> dict[str, torch.Tensor]:
    """The exact ``sum_i w_i s_i B_i A_i`` per module (float64), skipping absent modules."""
    out: dict[str, torch.Tensor] = {}
    for ad, w in zip(adapters, weights, strict=True):
        for m, la in ad.layers.items():
            d = w * la.delta(torch.float64)
            out[m] = out[m] + d if m in out else d
    return out


def max_rel_err(x: Mapping[str, torch.Tensor], y: Mapping[str, torch.Tensor]) -> float:
    """Largest relative Frobenius error over modules (same module sets required)."""
    assert set(x) == set(y), (sorted(x), sorted(y))
    return max(float((x[m].double() - y[m].double()).norm() / y[m].double().norm().clamp_min(1e-30)) for m in x)


def deltas64(adapter: LoraAdapter) -> dict[str, torch.Tensor]:
    return adapter.deltas(torch.float64)
