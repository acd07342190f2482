"""Compatibility checks between adapters, and between an adapter and its base model."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from hub.core.adapter import LoraAdapter
from hub.core.errors import IncompatibleAdaptersError


def check_compatible(
    adapters: Sequence[LoraAdapter],
    *,
    same_modules: bool = False,
    same_rank: bool = False,
    names: Sequence[str] | None = None,
) -> None:
    """Raise one clear error if ``adapters`` cannot be combined.

    Checks: at least one adapter; one base model (when known); the same (out, in) shape for every
    module two adapters share; with ``same_modules`` the same module set; with ``same_rank`` the
    same rank on every layer.

    Raises:
        IncompatibleAdaptersError: naming the adapters and the first disagreement.
    """
    if not adapters:
        raise IncompatibleAdaptersError("no adapters given")
    labels = list(names) if names else [f"adapter #{i}" for i in range(len(adapters))]
    bases = {a.base_model for a in adapters if a.base_model}
    if len(bases) > 1:
        detail = ", ".join(f"{n}: {a.base_model}" for n, a in zip(labels, adapters, strict=True))
        raise IncompatibleAdaptersError(f"adapters are for different base models ({detail})")
    ref_shapes: dict[str, tuple[tuple[int, int], str]] = {}
    for label, ad in zip(labels, adapters, strict=True):
        for m, shape in ad.shapes().items():
            if m in ref_shapes and ref_shapes[m][0] != shape:
                raise IncompatibleAdaptersError(
                    f"module {m!r} is {shape} (out, in) in {label} but {ref_shapes[m][0]} in {ref_shapes[m][1]}"
                )
            ref_shapes.setdefault(m, (shape, label))
    if same_modules:
        first = set(adapters[0].layers)
        for label, ad in zip(labels[1:], adapters[1:], strict=True):
            if set(ad.layers) != first:
                diff = sorted(set(ad.layers) ^ first)[:3]
                raise IncompatibleAdaptersError(
                    f"{label} adapts different modules than {labels[0]} (e.g. {diff})"
                )
    if same_rank:
        for label, ad in zip(labels[1:], adapters[1:], strict=True):
            for m, la in ad.layers.items():
                ref = adapters[0].layers.get(m)
                if ref is not None and ref.rank != la.rank:
                    raise IncompatibleAdaptersError(
                        f"module {m!r} has rank {la.rank} in {label} but {ref.rank} in {labels[0]}"
                    )


def check_against_base(adapter: LoraAdapter, base_shapes: Mapping[str, tuple[int, int]], base_id: str) -> None:
    """Check every adapted module exists in the base model with the same (out, in) shape.

    ``base_shapes`` maps the base model's linear module paths to (out_features, in_features).

    Raises:
        IncompatibleAdaptersError: a module missing from the base or with another shape.
    """
    for m, shape in adapter.shapes().items():
        if m not in base_shapes:
            raise IncompatibleAdaptersError(f"module {m!r} does not exist as a linear layer in base model {base_id}")
        if tuple(base_shapes[m]) != shape:
            raise IncompatibleAdaptersError(
                f"module {m!r} is {shape} (out, in) in the adapter but {tuple(base_shapes[m])} in base model {base_id}"
            )
