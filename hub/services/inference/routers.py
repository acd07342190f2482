"""Routed requests: router artifacts (registry kind ``router``) served with the routing engine's presets.

A router resolves to its state and experts in :class:`~hub.services.inference.resolver.Resolver`; its
files are read by :func:`hub.services.artifacts.read_router_state`. Routed requests run on a separate
copy of the base (the preset injects its own layers), one at a time per router; they are not batched
with plain adapter rows.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from hub.core.imports import import_once
from hub.services.inference.resolve import Plan
from hub.services.validation import parse_name

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

    from hub.services.adapters import AdapterService
    from hub.services.inference.engines import BaseEngines


class RouterRunner:
    """Runs routed requests: one routed copy of the base per router artifact, one request at a time.

    Args:
        engines: the served bases (tokenizer, device, context). adapters: expert descriptions (``semantic``).
        embed: texts -> embeddings (gates that read the request's embedding).
    """

    def __init__(self, engines: BaseEngines, adapters: AdapterService,
                 embed: Callable[[list[str]], np.ndarray]) -> None:
        self.engines, self.adapters, self.embed = engines, adapters, embed
        self._routed: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-router")
        self.calls = 0

    def base(self, plan: Plan) -> Any:
        """The served base (tokenizer, context) of a routed plan."""
        return self.engines.get(plan.base_id).base

    def _build(self, plan: Plan) -> Any:
        (AutoModelForCausalLM,) = import_once("transformers", "AutoModelForCausalLM")

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
                descs.append(self.adapters.get(None, *parse_name(eid.split("@")[0])).description or eid)
            extras = {"embed": lambda texts: torch.from_numpy(self.embed(texts)), "descriptions": descs}
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
            from routing.features import request_features

            text = lb.tokenizer.decode(ids, skip_special_tokens=True)
            routed.set_features(request_features(lambda t: torch.from_numpy(self.embed(t)), [text], routed.config))
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
