"""The merge-method registry and the one public entry point, :func:`merge`.

A method is a pure function ``(adapters, config) -> LoraAdapter`` registered in :data:`METHODS`
under its snake_case name with its paper link and its config class::

    @register("ties", paper="https://arxiv.org/abs/2306.01708", config=TiesConfig)
    def ties(adapters, config): ...

A method may attach a :class:`Provenance` whose recipe is a small JSON *report* (kept SVD energy,
found weights, ...); :func:`merge` moves it under ``recipe["report"]`` of the final provenance.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.core.registry import Registry

if TYPE_CHECKING:
    from hub.core.adapter import LoraAdapter
    from hub.core.provenance import ParentRef
    from merging.config import MethodConfig

MergeFn = Callable[[Sequence["LoraAdapter"], Any], "LoraAdapter"]

#: Every merge method by name. Filled when ``merging.methods`` is imported.
METHODS: Registry[MergeFn] = Registry("merge method")


def register(
    name: str, *, paper: str | None, config: type[MethodConfig], version: str = "1", summary: str = ""
) -> Callable[[MergeFn], MergeFn]:
    """Register a method function under ``name`` with its paper link and config class."""
    return METHODS.register(name, paper=paper, version=version, summary=summary, config=config)


def _load() -> None:
    import merging.methods  # noqa: F401 - registers every method module


def config_class(method: str) -> type[MethodConfig]:
    """The config class of ``method``.

    Raises:
        UnknownNameError: ``method`` is not registered; the message lists the known ones.
    """
    _load()
    cls: type[MethodConfig] = METHODS.entry(method).extra["config"]  # type: ignore[assignment]
    return cls


def method_names() -> list[str]:
    """The registered method names, sorted."""
    _load()
    return METHODS.names()


def describe_methods() -> list[dict[str, Any]]:
    """For docs and the API: name, version, paper, summary and params (type, default, doc) of each method."""
    _load()
    out = []
    for e in METHODS.entries():
        cfg: type[MethodConfig] = e.extra["config"]  # type: ignore[assignment]
        out.append(
            {
                "name": e.name,
                "version": e.version,
                "paper": e.paper,
                "summary": e.summary,
                "params": cfg.describe(),
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

    _load()
    entry = METHODS.entry(method)
    cls: type[MethodConfig] = entry.extra["config"]  # type: ignore[assignment]
    adapters = list(adapters)
    for label, given in (("names", names), ("parents", parents)):
        if given is not None and len(given) != len(adapters):
            raise InvalidInputError(f"{label} has {len(given)} entries but {len(adapters)} adapters were given")
    check_compatible(adapters, names=names)
    if weights is not None and len(weights) != len(adapters):
        raise InvalidInputError(
            f"weights has {len(weights)} entries but {len(adapters)} adapters were given", field="weights"
        )
    config = cls.from_params(params, weights=weights)
    result = entry.obj(adapters, config)
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
