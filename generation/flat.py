"""Flatten LoRA adapters into vectors and back (the parameter space the generators work in).

A :class:`FlatLayout` fixes the order of tensors (module path, then ``a`` before ``b``), their shapes,
the per-module alphas and the spec, so every adapter of one layout maps to a vector of the same
length ``L``. ICM-LoRA z-scores each tensor with its own mean and std (its code's
``normalizeLoraWeight``); the statistics are kept so the vector can be de-normalised.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from hub.core.adapter import LoraAdapter, LoraLayer, LoraSpec
from hub.core.errors import IncompatibleAdaptersError, InvalidInputError

_EPS = 1e-8


@dataclass(frozen=True)
class FlatLayout:
    """Order, shapes and alphas of the tensors of one adapter shape.

    Attributes:
        modules: module paths, sorted.
        ranks: the rank of each module (same order).
        shapes: ``(out_features, in_features)`` of each module (same order).
        alphas: the alpha of each module (same order).
        use_rslora, base_model, task_type: adapter-wide facts copied into generated adapters.
    """

    modules: tuple[str, ...]
    ranks: tuple[int, ...]
    shapes: tuple[tuple[int, int], ...]
    alphas: tuple[float, ...]
    use_rslora: bool = False
    base_model: str | None = None
    task_type: str | None = "CAUSAL_LM"

    @classmethod
    def of(cls, adapter: LoraAdapter) -> FlatLayout:
        """The layout of ``adapter``."""
        mods = tuple(adapter.layers)
        return cls(
            modules=mods,
            ranks=tuple(adapter.layers[m].rank for m in mods),
            shapes=tuple((adapter.layers[m].out_features, adapter.layers[m].in_features) for m in mods),
            alphas=tuple(float(adapter.layers[m].alpha) for m in mods),
            use_rslora=adapter.spec.use_rslora,
            base_model=adapter.base_model,
            task_type=adapter.spec.task_type,
        )

    def tensor_shapes(self) -> list[tuple[int, int]]:
        """Shapes in flattening order: a (r, in), b (out, r) per module."""
        out: list[tuple[int, int]] = []
        for r, (o, i) in zip(self.ranks, self.shapes, strict=True):
            out += [(r, i), (o, r)]
        return out

    @property
    def length(self) -> int:
        """L, the length of a flattened adapter."""
        return sum(a * b for a, b in self.tensor_shapes())

    def check(self, adapter: LoraAdapter, what: str = "adapter") -> None:
        """Raise :class:`IncompatibleAdaptersError` unless ``adapter`` has this layout."""
        other = FlatLayout.of(adapter)
        if other.modules != self.modules:
            missing = sorted(set(self.modules) ^ set(other.modules))[:4]
            raise IncompatibleAdaptersError(
                f"{what} targets other modules than the generator's layout (differences: {missing})")
        if other.ranks != self.ranks or other.shapes != self.shapes:
            raise IncompatibleAdaptersError(
                f"{what} has other ranks or shapes than the generator's layout "
                f"(ranks {sorted(set(other.ranks))} vs {sorted(set(self.ranks))})")

    def to_dict(self) -> dict[str, Any]:
        return {"modules": list(self.modules), "ranks": list(self.ranks), "shapes": [list(s) for s in self.shapes],
                "alphas": list(self.alphas), "use_rslora": self.use_rslora, "base_model": self.base_model,
                "task_type": self.task_type}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlatLayout:
        return cls(modules=tuple(d["modules"]), ranks=tuple(int(r) for r in d["ranks"]),
                   shapes=tuple((int(s[0]), int(s[1])) for s in d["shapes"]),
                   alphas=tuple(float(a) for a in d["alphas"]), use_rslora=bool(d["use_rslora"]),
                   base_model=d.get("base_model"), task_type=d.get("task_type"))


def common_layout(adapters: Sequence[LoraAdapter]) -> FlatLayout:
    """The layout all ``adapters`` share; :class:`IncompatibleAdaptersError` if they differ."""
    if not adapters:
        raise InvalidInputError("at least one adapter is needed to fix a layout")
    layout = FlatLayout.of(adapters[0])
    for i, a in enumerate(adapters[1:], start=1):
        layout.check(a, f"adapter #{i}")
        if a.base_model != layout.base_model:
            raise IncompatibleAdaptersError(
                f"adapter #{i} is for base {a.base_model!r}, the first for {layout.base_model!r}")
    return layout


def flatten(adapter: LoraAdapter, layout: FlatLayout) -> torch.Tensor:
    """The adapter's tensors concatenated in layout order, float32, shape (L,)."""
    layout.check(adapter)
    parts = []
    for m in layout.modules:
        la = adapter.layers[m]
        parts += [la.a.float().reshape(-1), la.b.float().reshape(-1)]
    return torch.cat(parts)


def tensor_stats(x: torch.Tensor, layout: FlatLayout) -> torch.Tensor:
    """Per-tensor (mean, std) of a flattened adapter, shape (n_tensors, 2) (std unbiased, floored)."""
    chunks = torch.split(x, [a * b for a, b in layout.tensor_shapes()])
    return torch.stack([torch.stack([c.mean(), c.std().clamp_min(_EPS)]) for c in chunks])


def normalise(x: torch.Tensor, stats: torch.Tensor, layout: FlatLayout) -> torch.Tensor:
    """Z-score each tensor chunk of ``x`` (L,) with ``stats`` (n_tensors, 2)."""
    sizes = [a * b for a, b in layout.tensor_shapes()]
    chunks = torch.split(x, sizes)
    return torch.cat([(c - s[0]) / s[1] for c, s in zip(chunks, stats, strict=True)])


def denormalise(u: torch.Tensor, stats: torch.Tensor, layout: FlatLayout) -> torch.Tensor:
    """Inverse of :func:`normalise`."""
    sizes = [a * b for a, b in layout.tensor_shapes()]
    chunks = torch.split(u, sizes)
    return torch.cat([c * s[1] + s[0] for c, s in zip(chunks, stats, strict=True)])


def unflatten(x: torch.Tensor, layout: FlatLayout, spec: LoraSpec | None = None) -> LoraAdapter:
    """A :class:`LoraAdapter` from a flat vector (L,) of ``layout``."""
    if x.dim() != 1 or x.numel() != layout.length:
        raise InvalidInputError(f"flat adapter must have shape ({layout.length},), got {tuple(x.shape)}")
    if not bool(torch.isfinite(x).all()):
        raise InvalidInputError("generated adapter has non-finite values")
    chunks = torch.split(x.detach().float(), [a * b for a, b in layout.tensor_shapes()])
    shapes = layout.tensor_shapes()
    layers: dict[str, LoraLayer] = {}
    for i, m in enumerate(layout.modules):
        a = chunks[2 * i].reshape(shapes[2 * i]).clone()
        b = chunks[2 * i + 1].reshape(shapes[2 * i + 1]).clone()
        layers[m] = LoraLayer(a=a, b=b, alpha=layout.alphas[i], use_rslora=layout.use_rslora)
    spec = spec or LoraSpec(base_model=layout.base_model, use_rslora=layout.use_rslora, task_type=layout.task_type)
    return LoraAdapter(layers=layers, spec=spec)
