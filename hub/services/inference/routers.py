"""Router artifacts (registry kind ``router``) served with the routing engine's presets.

A router version holds two files (the routing engine's checkpoint format, ``routing.checkpoint``):
``router.json`` (preset, config, expert ids IN ORDER with content hashes, base model) and
``router.safetensors`` (gate tensors, never pickle). :func:`publish_router` stores one;
:func:`router_plan` resolves one for a request: every expert must still exist, be visible and be
unchanged, else the request gets a clear 422 naming the missing experts (never a crash).

Routed requests run on a separate copy of the base (the preset injects its own layers), one at a
time per router; they are not batched with plain adapter rows.
"""

from __future__ import annotations

import hashlib
import json
import threading
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from hub.core.errors import IncompatibleAdaptersError, InvalidInputError, NotFoundError, PermissionDeniedError
from hub.core.files import ROUTER_MANIFEST, ROUTER_TENSORS
from hub.services.inference.resolve import Plan, check_base

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User

MANIFEST, TENSORS = ROUTER_MANIFEST, ROUTER_TENSORS


def read_state(hub: Any, ver: Any, key: str) -> Any:
    """The :class:`routing.checkpoint.RouterState` of a router version (header checked before tensors).

    Raises:
        InvalidInputError: a version without the router files, or files that do not parse.
    """
    from safetensors.torch import load_file

    from hub.core.safetensors_check import check_safetensors_header
    from routing.checkpoint import FORMAT, RouterState

    files = ver.files or {}
    if MANIFEST not in files or TENSORS not in files:
        raise InvalidInputError(f"router {key} has no {MANIFEST} and {TENSORS}; it cannot be served", model=key)
    try:
        man = json.loads(hub.blobs.read_bytes(files[MANIFEST]["key"]))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvalidInputError(f"router {key}: {MANIFEST} is not valid JSON: {e}") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise InvalidInputError(f"router {key}: {MANIFEST} format must be {FORMAT!r}")
    path = hub.blobs.path(files[TENSORS]["key"])
    check_safetensors_header(path)
    try:
        return RouterState(preset=man["preset"], config=man["config"], expert_ids=list(man["expert_ids"]),
                           base_model=man["base_model"], tensors=load_file(str(path), device="cpu"),
                           expert_hashes=list(man.get("expert_hashes", [])), base_revision=man.get("base_revision"),
                           sites=man.get("sites", {}), metrics=man.get("metrics", {}))
    except KeyError as e:
        raise InvalidInputError(f"router {key}: {MANIFEST} lacks field {e}") from None


def publish_router(hub: Any, user: User, name: str, state: Any, *, description: str = "",
                   provenance: Any = None) -> str:
    """Store a trained router as a new version of ``name`` (kind ``router``); returns ``ns/name@version``.

    With ``provenance`` (a :class:`hub.core.provenance.Provenance` whose parents are the experts), the
    version records it and gets one lineage edge per expert, in the same transaction.

    Raises:
        InvalidInputError: a bad name or a state without experts. PermissionDeniedError: the name is
        someone else's, or an adapter of another kind.
    """
    from hub.db.models import Adapter, AdapterVersion
    from hub.repositories import adapters as repo
    from hub.services import validation as v
    from routing.checkpoint import RouterState

    ns, nm = v.parse_name(name)
    if not isinstance(state, RouterState) or not state.expert_ids:
        raise InvalidInputError("a router needs a RouterState with at least one expert")
    manifest = (json.dumps(state.manifest(), indent=2, sort_keys=True) + "\n").encode()
    import os
    import tempfile

    fd, tmp = tempfile.mkstemp(suffix=".safetensors")
    os.close(fd)
    try:
        from safetensors.torch import save_file

        save_file({k: t.detach().contiguous().cpu() for k, t in state.tensors.items()}, tmp,
                  metadata={"format": "loom-router/1"})
        put_t = hub.blobs.put_file(tmp)
    finally:
        os.unlink(tmp)
    put_m = hub.blobs.put_bytes(manifest)
    sha = hashlib.sha256(manifest + put_t.key.encode()).hexdigest()
    with hub.sessions.begin() as s:
        a = repo.get_adapter_for_update(s, ns, nm)
        if a is None:
            a = Adapter(namespace=ns, name=nm, owner_id=user.id, kind="router", description=description,
                        tags=["router", state.preset], base_model=state.base_model, latest_version=0)
            s.add(a)
            s.flush()
        elif a.owner_id != user.id or a.kind != "router":
            raise PermissionDeniedError(f"{ns}/{nm} is not a router of {user.name}")
        a.latest_version += 1
        ver = AdapterVersion(adapter_id=a.id, number=a.latest_version, sha256=sha, size=put_t.size + put_m.size,
                             rank=0, base_model=state.base_model, base_revision=state.base_revision,
                             config={"preset": state.preset, "config": state.config},
                             files={MANIFEST: {"key": put_m.key, "size": put_m.size},
                                    TENSORS: {"key": put_t.key, "size": put_t.size}},
                             provenance=provenance.to_dict() if provenance is not None else None,
                             source="router", created_by_id=user.id)
        s.add(ver)
        if provenance is not None:
            from hub.services.publish import Publisher

            s.flush()
            Publisher._add_lineage(s, ver, provenance)
        return f"{ns}/{nm}@{a.latest_version}"


def router_plan(svc: Any, viewer: User | None, key: str, row: Any, ver: Any, base_id: str | None,
                model: str) -> Plan:
    """Resolve a router artifact: its state and every expert (in order), checked against the base.

    Raises:
        IncompatibleAdaptersError: experts deleted, not visible, changed, or for another base.
    """
    if row.kind != "router":
        raise InvalidInputError(f"{key} is a {row.kind!r} artifact; only adapters and routers can be served",
                                model=model)
    state = read_state(svc.hub, ver, key)
    bid = base_id or state.base_model
    check_base(key, state.base_model, bid)
    plan = Plan(bid, svc._base_row(bid, viewer, model), route="router", router=key, state=state)
    missing = []
    for eid in state.expert_ids:
        try:
            ekey, ad, _, _ = svc.adapter(viewer, eid, bid, model)
        except NotFoundError:
            missing.append(eid)
            continue
        plan.adapters[ekey] = ad
    if missing:
        raise IncompatibleAdaptersError(
            f"router {key} cannot run: its experts {missing} were deleted or are not visible; publish them "
            "again or retrain the router", model=model, missing=missing)
    return plan


class RouterRunner:
    """Runs routed requests: one routed copy of the base per router artifact, one request at a time."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc
        self._routed: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-router")
        self.calls = 0

    def base(self, plan: Plan) -> Any:
        """The served base (tokenizer, context) of a routed plan."""
        return self.svc.engine(plan.base_id)[0]

    def _build(self, plan: Plan) -> Any:
        from transformers import AutoModelForCausalLM

        from hub.services.inference.models import weights_folder
        from routing.checkpoint import load_router

        with self._lock:
            hit = self._routed.get(plan.router or "")
        if hit is not None:
            return hit
        lb = self.base(plan)
        row = plan.base_row
        model = AutoModelForCausalLM.from_pretrained(str(weights_folder(row.model_id, row.weights)), dtype="auto")
        model.config.name_or_path = plan.base_id
        model.to(lb.device).eval()
        state, experts = plan.state, list(plan.adapters.values())
        extras: dict[str, Any] = {}
        if state.preset == "semantic":
            import torch

            descs = []
            for eid in state.expert_ids:
                ns, nm = eid.split("@")[0].split("/")
                descs.append(self.svc.hub.adapters.get(None, ns, nm).description or eid)
            extras = {"embed": lambda texts: torch.from_numpy(self.svc.hub.search.embed(texts)),
                      "descriptions": descs}
        routed = load_router(model, experts, state, names=state.expert_ids, **extras)
        with self._lock:
            self._routed[plan.router or ""] = routed
        return routed

    def submit(self, plan: Plan, ids: list[int], new: int, req: Any) -> Future:
        """Queue one routed row; resolves to a :class:`~hub.services.inference.batcher.RowResult`."""
        return self._pool.submit(self._run, plan, ids, new, req)

    def _run(self, plan: Plan, ids: list[int], new: int, req: Any) -> Any:
        import torch

        from hub.services.inference.batcher import RowResult
        from routing.batching import generate_routed

        routed = self._build(plan)
        lb = self.base(plan)
        x = torch.tensor([ids], device=lb.device)
        if plan.state.preset == "semantic":
            routed.router.apply(routed, [lb.tokenizer.decode(ids, skip_special_tokens=True)])
        elif routed.needs_features:  # gates that read the request's embedding (config features="embedding")
            from routing.train import request_features

            text = lb.tokenizer.decode(ids, skip_special_tokens=True)
            routed.set_features(request_features(lambda t: torch.from_numpy(self.svc.hub.search.embed(t)), [text],
                                                 routed.config))
        greedy = req.temperature == 0.0
        kw = {} if greedy else {"temperature": req.temperature, "top_p": req.top_p}
        if not greedy and req.seed is not None:
            torch.manual_seed(req.seed)
        res = generate_routed(routed, x, torch.ones_like(x), max_new_tokens=new, greedy=greedy,
                              eos_token_id=lb.eos_id, **kw)
        self.calls += 1
        toks = res.tokens[0][:new]
        finish = "length" if len(toks) >= new else "stop"
        if toks and toks[-1] == lb.eos_id:
            toks, finish = toks[:-1], "stop"
        return RowResult(toks, finish, dict(res.adapters[0]), 1,
                         res.gate_weights[0] if res.gate_weights else None)

    def close(self) -> None:
        self._pool.shutdown(wait=True)
