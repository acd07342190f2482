"""Loom's one adapter type.

A :class:`LoraAdapter` is a set of :class:`LoraLayer` keyed by the *module path inside the base
model* (``model.layers.0.self_attn.q_proj``), plus a frozen :class:`LoraSpec` of adapter-wide facts.
Rank and alpha live on each layer, so merges and generators may produce a different rank per layer.

Conventions (the same as PEFT's ``nn.Linear`` LoRA):
    a: (r, in_features)      -- lora_A.weight
    b: (out_features, r)     -- lora_B.weight
    delta W = scaling * b @ a,  scaling = alpha / r  (or alpha / sqrt(r) with rsLoRA)
    y = x @ W.T + scaling * (x @ a.T) @ b.T
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from hub.core.errors import InvalidAdapterError
from hub.core.provenance import Provenance


@dataclass(frozen=True)
class LoraSpec:
    """Adapter-wide facts.

    Attributes:
        base_model: id of the base model (``base_model_name_or_path``); required by the hub.
        base_revision: the base model's revision (commit sha or tag), if pinned.
        use_rslora: scale by ``alpha / sqrt(r)`` instead of ``alpha / r``.
        task_type: PEFT task type, e.g. ``CAUSAL_LM``.
        extra_config: other ``adapter_config.json`` fields kept verbatim for an exact round trip.
    """

    base_model: str | None = None
    base_revision: str | None = None
    use_rslora: bool = False
    task_type: str | None = "CAUSAL_LM"
    extra_config: tuple[tuple[str, Any], ...] = ()

    def extra(self) -> dict[str, Any]:
        return dict(self.extra_config)


@dataclass(frozen=True, eq=False)
class LoraLayer:
    """One LoRA pair. ``a``: (r, in), ``b``: (out, r)."""

    a: torch.Tensor
    b: torch.Tensor
    alpha: float
    use_rslora: bool = False

    def __post_init__(self) -> None:
        if self.a.dim() != 2 or self.b.dim() != 2:
            raise InvalidAdapterError(
                f"LoRA A and B must be 2-D, got A {tuple(self.a.shape)} and B {tuple(self.b.shape)}"
            )
        if self.a.shape[0] != self.b.shape[1]:
            raise InvalidAdapterError(
                f"LoRA rank mismatch: A is {tuple(self.a.shape)} (r, in) but B is "
                f"{tuple(self.b.shape)} (out, r)"
            )
        if self.a.shape[0] == 0:
            raise InvalidAdapterError("LoRA rank must be >= 1, got 0")

    @property
    def rank(self) -> int:
        return int(self.a.shape[0])

    @property
    def in_features(self) -> int:
        return int(self.a.shape[1])

    @property
    def out_features(self) -> int:
        return int(self.b.shape[0])

    @property
    def scaling(self) -> float:
        return self.alpha / (math.sqrt(self.rank) if self.use_rslora else self.rank)

    def delta(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """The dense weight update ``scaling * b @ a``, shape (out, in)."""
        return self.scaling * (self.b.to(dtype) @ self.a.to(dtype))  # (out, r) @ (r, in)

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LoraLayer:
        return replace(self, a=self.a.to(device=device, dtype=dtype), b=self.b.to(device=device, dtype=dtype))


def _leaf(module: str) -> str:
    return module.rsplit(".", 1)[-1]


@dataclass(frozen=True, eq=False)
class LoraAdapter:
    """A LoRA adapter: layers keyed by base-model module path, a spec, and optional provenance."""

    layers: Mapping[str, LoraLayer]
    spec: LoraSpec = field(default_factory=LoraSpec)
    provenance: Provenance | None = None

    def __post_init__(self) -> None:
        if not self.layers:
            raise InvalidAdapterError("an adapter needs at least one LoRA layer")
        object.__setattr__(self, "layers", dict(sorted(self.layers.items())))

    def __iter__(self) -> Iterator[str]:
        return iter(self.layers)

    def __len__(self) -> int:
        return len(self.layers)

    @property
    def base_model(self) -> str | None:
        return self.spec.base_model

    @property
    def target_modules(self) -> list[str]:
        """Leaf module names (``q_proj``, ``v_proj``), sorted."""
        return sorted({_leaf(m) for m in self.layers})

    @property
    def ranks(self) -> dict[str, int]:
        return {m: layer.rank for m, layer in self.layers.items()}

    @property
    def r(self) -> int:
        """The most common rank (PEFT's ``r``); others go to ``rank_pattern``."""
        return Counter(layer.rank for layer in self.layers.values()).most_common(1)[0][0]

    @property
    def alpha(self) -> float:
        """The most common alpha (PEFT's ``lora_alpha``); others go to ``alpha_pattern``."""
        return Counter(layer.alpha for layer in self.layers.values()).most_common(1)[0][0]

    @property
    def dtype(self) -> torch.dtype:
        return next(iter(self.layers.values())).a.dtype

    def num_parameters(self) -> int:
        return sum(layer.a.numel() + layer.b.numel() for layer in self.layers.values())

    def shapes(self) -> dict[str, tuple[int, int]]:
        """Module path -> (out_features, in_features) of the base linear each layer adapts."""
        return {m: (layer.out_features, layer.in_features) for m, layer in self.layers.items()}

    def deltas(self, dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
        return {m: layer.delta(dtype) for m, layer in self.layers.items()}

    def to(self, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> LoraAdapter:
        return replace(self, layers={m: la.to(device, dtype) for m, la in self.layers.items()})

    def with_provenance(self, provenance: Provenance) -> LoraAdapter:
        return replace(self, provenance=provenance)

    def with_spec(self, **changes: Any) -> LoraAdapter:
        return replace(self, spec=replace(self.spec, **changes))

    def content_hash(self) -> str:
        """sha256 over module names, dtypes, shapes, tensor bytes, alphas and scaling mode."""
        h = hashlib.sha256()
        for m, layer in self.layers.items():
            h.update(f"{m}|{layer.alpha!r}|{layer.use_rslora}|".encode())
            for t in (layer.a, layer.b):
                t = t.detach().contiguous().cpu()
                h.update(f"{t.dtype}{tuple(t.shape)}".encode())
                h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        return h.hexdigest()

    def allclose(self, other: LoraAdapter, rtol: float = 1e-5, atol: float = 1e-6) -> bool:
        """Same modules and the same A, B, alpha, scaling mode (not deltas: see ``deltas``)."""
        if self.layers.keys() != other.layers.keys():
            return False
        for m, x in self.layers.items():
            y = other.layers[m]
            if x.alpha != y.alpha or x.use_rslora != y.use_rslora or x.a.shape != y.a.shape:
                return False
            if x.b.shape != y.b.shape:
                return False
            if not (torch.allclose(x.a.float(), y.a.float(), rtol, atol)
                    and torch.allclose(x.b.float(), y.b.float(), rtol, atol)):
                return False
        return True

    @classmethod
    def from_deltas(
        cls,
        deltas: Mapping[str, torch.Tensor],
        rank: int | Mapping[str, int],
        spec: LoraSpec | None = None,
        alpha: float | None = None,
        provenance: Provenance | None = None,
    ) -> LoraAdapter:
        """Factor dense deltas (out, in) back into LoRA pairs by truncated SVD.

        ``alpha`` defaults to the rank, so scaling is 1 and ``b @ a`` equals the truncated delta.
        """
        spec = spec or LoraSpec()
        layers: dict[str, LoraLayer] = {}
        for m, d in deltas.items():
            r = rank if isinstance(rank, int) else rank[m]
            r = max(1, min(r, min(d.shape)))
            u, s, vh = torch.linalg.svd(d.float(), full_matrices=False)
            u, s, vh = u[:, :r], s[:r], vh[:r, :]
            la = alpha if alpha is not None else float(r)
            scaling = la / (math.sqrt(r) if spec.use_rslora else r)
            sq = torch.sqrt(s)
            b = (u * sq) / math.sqrt(scaling)  # (out, r)
            a = sq[:, None] * vh / math.sqrt(scaling)  # (r, in)
            layers[m] = LoraLayer(a=a.contiguous(), b=b.contiguous(), alpha=la, use_rslora=spec.use_rslora)
        return cls(layers=layers, spec=spec, provenance=provenance)
