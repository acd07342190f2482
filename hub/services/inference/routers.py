"""Routed requests: router artifacts (registry kind ``router``) served with the routing engine's presets.

A router resolves to its state and experts in :class:`~hub.services.inference.resolver.Resolver`; its
files are read by :func:`hub.services.artifacts.read_router_state`. Routed requests run on a separate
copy of the base per router artifact (the preset injects its own layers). With the continuous scheduler
(``LOOM_SCHEDULER=continuous``, the default) the rows of one router share the forwards of that copy: a
:class:`~hub.services.inference.scheduler.Scheduler` per router over
:class:`routing.routed_batch.RoutedRows` (iteration-level joins and leaves, per-row sampling, streaming,
cancellation and the same 429 bound as plain rows; each row's request features, semantic mixture and
prefill-time sequence weights follow it). A preset outside :data:`routing.routed_batch.BATCHED`, and every
router under ``LOOM_SCHEDULER=window``, runs one request at a time with
:func:`routing.batching.generate_routed`. Routed rows are not yet batched with plain adapter rows.
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
    """Runs routed requests: one routed copy of the base per router artifact, its rows batched by a
    scheduler of their own (or one request at a time, see the module docstring).

    Args:
        engines: the served bases (tokenizer, device, context). adapters: expert descriptions (``semantic``).
        embed: texts -> embeddings (gates that read the request's embedding).
    """

    def __init__(self, engines: BaseEngines, adapters: AdapterService,
                 embed: Callable[[list[str]], np.ndarray]) -> None:
        self.engines, self.adapters, self.embed = engines, adapters, embed
        self._routed: dict[str, Any] = {}
        self._schedulers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._build_lock = threading.Lock()  # one load of each router's copy of the base
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="loom-router")
        self._calls = 0

    @property
    def calls(self) -> int:
        """Routed rows served (batched and one at a time)."""
        return self._calls + sum(s.rows_served for s in self.schedulers().values())

    def base(self, plan: Plan) -> Any:
        """The served base (tokenizer, context) of a routed plan."""
        return self.engines.get(plan.base_id).base

    def scheduler(self, plan: Plan) -> Any:
        """The scheduler that batches ``plan``'s router rows (built with the router's copy of the base on
        first use), or None: that router runs one request at a time."""
        from routing.routed_batch import RoutedRows, batchable

        key = plan.router or ""
        with self._lock:
            hit = self._schedulers.get(key)
        if hit is not None or self.engines.settings.scheduler == "window":
            return hit
        with self._build_lock:
            with self._lock:
                hit = self._schedulers.get(key)
            if hit is not None:
                return hit
            routed = self._build(plan)
            if not batchable(routed):
                return None
            from hub.services.inference.scheduler import Scheduler

            s = self.engines.settings
            sched = Scheduler(self.base(plan), None, s.inference_max_batch, s.inference_max_queued,
                              rows=RoutedRows(routed, self._embed), name=f"loom-router-{key}",
                              max_wait=s.inference_max_queue_wait)
            sched.observer = self.engines.observer
            with self._lock:
                self._schedulers[key] = sched
            return sched

    def schedulers(self) -> dict[str, Any]:
        """A snapshot of the routers' schedulers (router key -> scheduler)."""
        with self._lock:
            return dict(self._schedulers)

    def inputs(self, sched: Any, plan: Plan, ids: list[int]) -> dict[str, Any]:
        """A batched router row's routing inputs (its row state on ``sched``, the router's scheduler): the
        request features or semantic decision of the prompt's text."""
        text = self.base(plan).tokenizer.decode(ids, skip_special_tokens=True)
        return dict(sched.batch.runner.inputs([text])[0])

    def _embed(self, texts: list[str]) -> Any:
        import torch

        return torch.from_numpy(self.embed(texts))

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
            descs = []
            for eid in state.expert_ids:
                descs.append(self.adapters.get(None, *parse_name(eid.split("@")[0])).description or eid)
            extras = {"embed": self._embed, "descriptions": descs}
        routed = load_router(model, experts, state, names=state.expert_ids, **extras)
        with self._lock:
            self._routed[plan.router or ""] = routed
        return routed

    def submit(self, plan: Plan, ids: list[int], new: int, req: Any) -> Future:
        """Queue one routed row for the one-at-a-time path; resolves to a
        :class:`~hub.services.inference.batcher.RowResult`."""
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
            routed.set_features(request_features(self._embed, [text], routed.config))
        greedy = req.temperature == 0.0
        kw = {} if greedy else {"temperature": req.temperature, "top_p": req.top_p}
        if not greedy and req.seed is not None:
            torch.manual_seed(req.seed)
        res = generate_routed(routed, x, torch.ones_like(x), max_new_tokens=new, greedy=greedy,
                              eos_token_id=lb.eos_id, ignore_eos=req.ignore_eos, **kw)
        with self._lock:
            self._calls += 1
        toks = res.tokens[0][:new]
        finish = "length" if len(toks) >= new else "stop"
        if toks and toks[-1] == lb.eos_id and not req.ignore_eos:
            toks, finish = toks[:-1], "stop"
        return RowResult(toks, finish, dict(res.adapters[0]), 1,
                         res.gate_weights[0] if res.gate_weights else None)

    def close(self) -> None:
        """Stop the routers' schedulers (after their rows) and the one-at-a-time pool."""
        with self._lock:
            schedulers, self._schedulers = list(self._schedulers.values()), {}
        for s in schedulers:
            s.close()
        self._pool.shutdown(wait=True)
