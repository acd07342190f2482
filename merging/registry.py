"""The merge-method registry and the one public entry point, :func:`merge`.

A method is a pure function ``(adapters, config) -> LoraAdapter`` described by a
:class:`merging.spec.MergeMethod` (name, paper link, config class). ``merging.methods.ALL`` lists
every method; :func:`methods` builds the registry from that list on first use (importing the
method modules loads torch, so ``import merging.registry`` does not).

A method may attach a :class:`Provenance` whose recipe is a small JSON *report* (kept SVD energy,
found weights, ...); :func:`merge` moves it under ``recipe["report"]`` of the final provenance.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.core.registry import Registry
from merging.spec import MergeFn, MergeMethod

if TYPE_CHECKING:
    from hub.core.adapter import LoraAdapter
    from hub.core.provenance import ParentRef
    from merging.config import MethodConfig

__all__ = ["MergeFn", "config_class", "describe_methods", "merge", "method_names", "methods"]


@functools.cache
def methods() -> Registry[MergeMethod]:
    """Every merge method by name (built once from ``merging.methods.ALL``; duplicate names raise)."""
    from merging.methods import ALL

    reg: Registry[MergeMethod] = Registry("merge method")
    for m in ALL:
        doc = (m.fn.__doc__ or "").strip()
        summary = m.summary or (doc.splitlines()[0] if doc else "")
        reg.register(m.name, paper=m.paper, version=m.version, summary=summary)(m)
    return reg


def __getattr__(name: str) -> Any:
    if name == "METHODS":  # the registry, built on first use
        return methods()
    raise AttributeError(f"module 'merging.registry' has no attribute {name!r}")


def config_class(method: str) -> type[MethodConfig]:
    """The config class of ``method``.

    Raises:
        UnknownNameError: ``method`` is not registered; the message lists the known ones.
    """
    return methods().get(method).config


def method_names() -> list[str]:
    """The registered method names, sorted."""
    return methods().names()


def describe_methods() -> list[dict[str, Any]]:
    """For docs and the API: name, version, paper, summary and params (type, default, doc) of each method."""
    out = []
    for e in methods().entries():
        out.append(
            {
                "name": e.name,
                "version": e.version,
                "paper": e.paper,
                "summary": e.summary,
                "params": e.obj.config.describe(),
            }
        )
    return out


def _parents(
    weights: list[float], names: Sequence[str] | None, parents: Sequence[ParentRef] | None
) -> tuple[ParentRef, ...]:
    from hub.core.provenance import ParentRef

    if parents is not None:
        return tuple(p if p.weight is not None else replace(p, weight=w) for p, w in zip(parents, weights, strict=True))
    if names is not None:
        return tuple(ParentRef(name=str(nm), weight=w) for nm, w in zip(names, weights, strict=True))
    return ()


def merge(
    adapters: Sequence[LoraAdapter],
    method: str,
    weights: Sequence[float] | None = None,
    params: Mapping[str, Any] | None = None,
    names: Sequence[str] | None = None,
    parents: Sequence[ParentRef] | None = None,
) -> LoraAdapter:
    """Merge ``adapters`` with a registered method and attach provenance.

    Args:
        adapters: the inputs (same base model; shared modules must have the same shape).
        method: a registered name (see :func:`describe_methods`).
        weights: one per adapter, may be negative; default 1.0 each.
        params: the method's params, JSON-able (``lorahub`` also takes a callable ``objective``).
        names: labels of the inputs for error messages and parents (``ns/name@version``).
        parents: explicit parent references (override ``names`` for the provenance).

    Returns:
        A new adapter with runtime scaling 1 and provenance: method, method version, recipe
        ``{"params": ..., "weights": ..., "report": ...}`` and parents.

    Raises:
        UnknownNameError: unknown method (lists the known ones).
        InvalidInputError: unknown or invalid params, wrong number of weights.
        IncompatibleAdaptersError: no adapters, different base models or shapes.
    """
    from hub.core.compat import check_compatible
    from hub.core.provenance import Provenance

    entry = methods().entry(method)
    adapters = list(adapters)
    for label, given in (("names", names), ("parents", parents)):
        if given is not None and len(given) != len(adapters):
            raise InvalidInputError(f"{label} has {len(given)} entries but {len(adapters)} adapters were given")
    check_compatible(adapters, names=names)
    if weights is not None and len(weights) != len(adapters):
        raise InvalidInputError(
            f"weights has {len(weights)} entries but {len(adapters)} adapters were given", field="weights"
        )
    config = entry.obj.config.from_params(params, weights=weights)
    result = entry.obj.fn(adapters, config)
    report = result.provenance.recipe if result.provenance is not None else {}
    used = config.weights_for(len(adapters))
    if "weights" in report:  # a method that finds its weights (lorahub) reports them
        used = [float(w) for w in report["weights"]]
    recipe = {"params": config.to_params(), "weights": used, "report": report}
    prov = Provenance.create(
        method=method,
        recipe=recipe,
        parents=_parents(used, names, parents),
        method_version=entry.version,
    )
    return result.with_provenance(prov)
