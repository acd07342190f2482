"""Resolution of a request's ``model`` (and ``merged_adapters``) into a :class:`~hub.services.inference.resolve.Plan`.

The forms a ``model`` may take are listed in :mod:`hub.services.inference.resolve`. Adapters are read
from the registry through the host-memory tier (:class:`~hub.services.inference.cache.CpuTier`) and
checked once against their base's shapes; a router artifact resolves to its state and every expert in
bank order (each must still exist, be visible and be unchanged, else a clear 422 naming the missing
experts); ``auto`` asks the :class:`~hub.services.inference.auto.AutoRouter`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError
from hub.core.refs import AdapterRef
from hub.services.artifacts import read_router_state
from hub.services.inference.resolve import AUTO, MergedAdapters, Plan, check_base, split_model, unknown_model

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.adapter import LoraAdapter
    from hub.db.models import Adapter, AdapterVersion, BaseModel, User
    from hub.services.adapters import AdapterService
    from hub.services.base_models import BaseModelService
    from hub.services.inference.auto import AutoRouter
    from hub.services.inference.cache import CpuTier
    from hub.services.inference.engines import BaseEngines


#: the artifact kinds a completion request may name as its model
SERVABLE_KINDS = ("adapter", "router")

class Resolver:
    """Turn ``model`` strings into plans, as a viewer sees the registry.

    Args:
        adapters: reads artifacts (visibility enforced). base_models: the registered bases.
        engines: the default base. cpu: host-memory adapter cache. auto: the semantic router.
    """

    def __init__(self, adapters: AdapterService, base_models: BaseModelService, engines: BaseEngines, cpu: CpuTier,
                 auto: AutoRouter) -> None:
        self.adapters, self.base_models, self.engines, self.cpu, self.auto = adapters, base_models, engines, cpu, auto
        self._checked: set[tuple[str, str, str]] = set()

    # -- listing ----------------------------------------------------------------------------------
    def models(self, viewer: User | None, limit: int = 1000) -> list[dict[str, Any]]:
        """Bases and the visible adapters and routers (what a request may name) as OpenAI model objects (adapters
        carry ``parent`` and ``root``); generators are not models."""
        out: list[dict[str, Any]] = []
        for b in self.engines.served_bases():
            if any(o["id"] == b.model_id for o in out):
                continue
            out.append(_base_object(b))
        offset = 0
        while len(out) < limit:
            rows, total = self.adapters.list(viewer, offset=offset, limit=200)
            out += [_adapter_object(a) for a in rows if a.kind in SERVABLE_KINDS]  # a generator answers no prompt
            offset += len(rows)
            if not rows or offset >= total:
                break
        return out

    def model(self, viewer: User | None, model_id: str) -> dict[str, Any]:
        """One entry of :meth:`models`, looked up directly (however many adapters the hub holds).

        Raises:
            NotFoundError: no served base, and no adapter or router the viewer may see, has that id (the 404 that
                lists what exists).
        """
        base = next((b for b in self.engines.served_bases() if b.model_id == model_id), None)
        if base is not None:
            return _base_object(base)
        parsed = AdapterRef.try_parse(model_id)
        if parsed is not None and parsed.version is None:
            try:
                row = self.adapters.get(viewer, parsed.namespace, parsed.name)
            except NotFoundError:
                row = None
            if row is not None and row.kind in SERVABLE_KINDS:
                return _adapter_object(row)
        raise self._unknown(viewer, model_id)

    def _unknown(self, viewer: User | None, model: str) -> NotFoundError:
        return unknown_model(model, [m["id"] for m in self.models(viewer, limit=200)])

    def base_row(self, base_id: str, viewer: User | None, model: str) -> BaseModel:
        """The registered base ``base_id``; an unknown one is the 404 that lists what exists."""
        row = self.base_models.find(base_id)
        if row is None:
            raise self._unknown(viewer, model)
        return row

    # -- adapters ---------------------------------------------------------------------------------
    def adapter(self, viewer: User | None, ref: str, base_id: str | None,
                model: str) -> tuple[str, LoraAdapter | None, Adapter, AdapterVersion]:
        """Resolve an artifact ref to (key, LoraAdapter or None for a router, row, version), checked against the base."""
        from hub.core.compat import check_against_base

        parsed = AdapterRef.try_parse(ref)
        if parsed is None:
            raise self._unknown(viewer, model)
        name, number = parsed.full_name, parsed.version
        try:
            row, ver = self.adapters.with_version(viewer, parsed.namespace, parsed.name, number)
        except NotFoundError:
            if number is not None:
                raise NotFoundError(f"adapter {name} has no version {number} (or is not visible)",
                                    model=model) from None
            raise self._unknown(viewer, model) from None
        key = f"{name}@{ver.number}"
        if row.kind != "adapter":
            return key, None, row, ver  # routers: the caller dispatches
        check_base(key, ver.base_model, base_id or ver.base_model)
        ad = self.cpu.get(key, lambda: self.adapters.load(viewer, name, ver.number)[0], tag=ver.sha256)
        bid = base_id or ver.base_model
        if (key, ver.sha256, bid) not in self._checked:
            base = self.base_models.find(bid)
            if base is None:
                raise NotFoundError(
                    f"{key} is an adapter for base model {bid}, which is not registered on this hub; register it "
                    f"with `loom base add {bid} --config config.json --weights DIR` to serve it", model=model)
            check_against_base(ad, self.base_models.shapes(base), bid)
            self._checked.add((key, ver.sha256, bid))
        return key, ad, row, ver

    # -- plans ------------------------------------------------------------------------------------
    def resolve(self, viewer: User | None, model: str, merged: MergedAdapters | None = None,
                route_text: str | None = None) -> Plan:
        """``model`` (+ ``merged_adapters``) -> a :class:`Plan`.

        Raises:
            NotFoundError: unknown model (the message lists what exists). IncompatibleAdaptersError:
            an adapter for another base. InvalidInputError: malformed ids or mixtures.
        """
        base_id, rest = split_model(model)
        if base_id is None and rest != AUTO and self.base_models.find(rest) is not None:
            base_id, rest = rest, ""
        if base_id is not None:
            self.base_row(base_id, viewer, model)
        if merged is not None:
            return self._mixture(viewer, model, base_id, rest, merged)
        if rest == "":
            return Plan(base_id, self.base_row(base_id, viewer, model))  # type: ignore[arg-type]
        if rest == AUTO:
            base_id = base_id or self.engines.default_base()
            return self._auto(viewer, self.base_row(base_id, viewer, model), route_text or "")
        key, ad, row, ver = self.adapter(viewer, rest, base_id, model)
        if ad is None:
            return self._router(viewer, key, row, ver, base_id, model)
        bid = base_id or ver.base_model
        return Plan(bid, self.base_row(bid, viewer, model), {key: 1.0}, {key: ad}, route="adapter")

    def _mixture(self, viewer: User | None, model: str, base_id: str | None, rest: str,
                 merged: MergedAdapters) -> Plan:
        if rest not in ("", AUTO):
            raise InvalidInputError(f"with merged_adapters, model must name the base model (or 'auto'), got {model!r}",
                                    field="model")
        base_id = base_id or self.engines.default_base()
        plan = Plan(base_id, self.base_row(base_id, viewer, model), route="mixture")
        for ref, w in zip(merged.ids, merged.weights, strict=True):
            try:
                key, ad, row, _ = self.adapter(viewer, ref, base_id, model)
            except NotFoundError:  # name the adapter, not the base (which exists)
                raise NotFoundError(f"merged_adapters: adapter {ref} does not exist or is not visible",
                                    field="merged_adapters.ids", adapter=ref) from None
            if ad is None:
                raise InvalidInputError(f"{ref} is a {row.kind}, not an adapter; it cannot be in a mixture",
                                        field="merged_adapters.ids")
            plan.mixture[key] = plan.mixture.get(key, 0.0) + w
            plan.adapters[key] = ad
        return plan

    def _auto(self, viewer: User | None, base_row: BaseModel, text: str) -> Plan:
        choice = self.auto.choose(viewer, base_row.model_id, text)
        plan = Plan(base_row.model_id, base_row, route="auto", scores=choice.scores)
        for name, w in choice.chosen:
            key, ad, _, _ = self.adapter(viewer, name, base_row.model_id, AUTO)
            assert ad is not None  # the router chose among kind="adapter" hits
            plan.mixture[key], plan.adapters[key] = w, ad
        return plan

    def _router(self, viewer: User | None, key: str, row: Adapter, ver: AdapterVersion, base_id: str | None,
                model: str) -> Plan:
        """A router artifact: its state and every expert (in order), checked against the base.

        Raises:
            IncompatibleAdaptersError: experts deleted, not visible, changed, or for another base.
        """
        if row.kind != "router":
            raise InvalidInputError(f"{key} is a {row.kind!r} artifact; only adapters and routers can be served",
                                    model=model)
        state = read_router_state(self.adapters, ver, key)
        bid = base_id or state.base_model
        check_base(key, state.base_model, bid)
        plan = Plan(bid, self.base_row(bid, viewer, model), route="router", router=key, state=state)
        missing = []
        for eid in state.expert_ids:
            try:
                ekey, ad, _, _ = self.adapter(viewer, eid, bid, model)
            except NotFoundError:
                missing.append(eid)
                continue
            assert ad is not None
            plan.adapters[ekey] = ad
        if missing:
            raise IncompatibleAdaptersError(
                f"router {key} cannot run: its experts {missing} were deleted or are not visible; publish them "
                "again or retrain the router", model=model, missing=missing)
        return plan


def _base_object(b: Any) -> dict[str, Any]:
    """A served base as an OpenAI model object."""
    return {"id": b.model_id, "object": "model", "created": int(b.created_at.timestamp()), "owned_by": "loom",
            "parent": None, "root": b.model_id, "loom": {"kind": "base"}}


def _adapter_object(a: Adapter) -> dict[str, Any]:
    """An adapter or router row as an OpenAI model object (``parent`` its base, ``root`` its latest version)."""
    return {"id": a.full_name, "object": "model", "created": int(a.created_at.timestamp()), "owned_by": a.namespace,
            "parent": a.base_model, "root": f"{a.full_name}@{a.latest_version}",
            "loom": {"kind": a.kind, "description": a.description}}
