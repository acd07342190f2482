"""The inference service: resolve ``model``, tokenize, batch, generate, report adapters and weights.

One :class:`InferenceService` per process. Base models load lazily on first use (one
:class:`~hub.services.inference.batcher.Batcher` each); adapters come from the registry through the
:class:`~hub.services.inference.cache.CpuTier` and each base's
:class:`~hub.services.inference.cache.GpuTier`.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError, NotFoundError
from hub.core.refs import AdapterRef
from hub.services.inference.messages import (
    Choice,
    CompletionRequest,
    CompletionResult,
    ContextLengthError,
    IncrementalText,
)
from hub.services.inference.resolve import (
    AUTO,
    MergedAdapters,
    Plan,
    check_base,
    split_model,
    unknown_model,
)

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.adapter import LoraAdapter
    from hub.db.models import User
    from hub.services.hub import Hub


def encode_prompt(tokenizer: Any, prompt: str) -> list[int]:
    """Token ids of a prompt, starting with the tokenizer's BOS token when it has one.

    Models are trained with BOS first (Llama's tokenizer adds it itself; a plain byte-level tokenizer
    does not), so it is added here when the tokenizer left it out, as vLLM and llama.cpp do.
    """
    ids = list(tokenizer(prompt)["input_ids"])
    bos = getattr(tokenizer, "bos_token_id", None)
    if ids and bos is not None and ids[0] != bos:
        ids.insert(0, bos)
    return ids


class InferenceService:
    """Serve registered bases and adapters.

    Args:
        hub: the registry container. device: force ``cpu``/``cuda`` (default: cuda if available).
    """

    def __init__(self, hub: Hub, device: str | None = None) -> None:
        from hub.services.inference.cache import CpuTier

        self.hub, self.settings, self.device = hub, hub.settings, device
        self.cpu = CpuTier(self.settings.adapter_cache_cpu)
        self._bases: dict[str, Any] = {}  # base id -> (LoadedBase, GpuTier, Batcher)
        self._lock = threading.Lock()
        self._base_locks: dict[str, threading.Lock] = {}
        self._checked: set[tuple[str, str, str]] = set()
        self._routers: Any = None
        self._exemplars: dict[tuple[int, int], Any] = {}  # (adapter id, version) -> unit vector or None
        from hub.services.inference import metrics

        self._collector = metrics.register(self)

    @property
    def routers(self) -> Any:
        """The :class:`~hub.services.inference.routers.RouterRunner` (built on first use)."""
        from hub.services.inference.routers import RouterRunner

        with self._lock:
            if self._routers is None:
                self._routers = RouterRunner(self)
            return self._routers

    # -- bases ----------------------------------------------------------------------------------
    def served_bases(self) -> list[Any]:
        """Registered base rows (all of them; an HF-id base errors only when used)."""
        return list(self.hub.base_models.list())

    def default_base(self) -> str:
        """The base ``auto`` and mixtures use when the request names none."""
        if self.settings.inference_default_base:
            return self.settings.inference_default_base
        ids = sorted({b.model_id for b in self.served_bases()})
        if len(ids) == 1:
            return ids[0]
        raise InvalidInputError(f"several base models are registered ({ids}); name one as '<base>:auto' or set "
                                "LOOM_INFERENCE_DEFAULT_BASE", field="model")

    def engine(self, base_id: str) -> Any:
        """(LoadedBase, GpuTier, Batcher) of ``base_id``, loading it on first use."""
        from hub.services.inference.batcher import Batcher
        from hub.services.inference.cache import GpuTier
        from hub.services.inference.models import load_base

        with self._lock:
            if base_id in self._bases:
                return self._bases[base_id]
            lock = self._base_locks.setdefault(base_id, threading.Lock())
        with lock:
            with self._lock:
                if base_id in self._bases:
                    return self._bases[base_id]
            row = self.hub.base_models.get(base_id)
            lb = load_base(row.model_id, row.revision, row.weights, self.device)
            gpu = GpuTier(lb.mixed, self.settings.adapter_cache_gpu)
            batcher = Batcher(lb, gpu, self.settings.inference_max_batch,
                              self.settings.inference_batch_window_ms / 1000.0)
            with self._lock:
                self._bases[base_id] = (lb, gpu, batcher)
            return self._bases[base_id]

    def close(self) -> None:
        """Stop the batchers."""
        with self._lock:
            engines, self._bases = list(self._bases.values()), {}
        for _, _, b in engines:
            b.close()
        if self._routers is not None:
            self._routers.close()
        from hub.services.inference import metrics

        metrics.unregister(self, self._collector)
        self._collector = None

    def base_for(self, model: str) -> str:
        """The base a ``<base>:auto`` / ``auto`` / mixture request runs on."""
        base_id, _ = split_model(model)
        if base_id is None and self.hub.base_models.find(model.strip()) is not None:
            return model.strip()
        return base_id or self.default_base()

    def tokenizer(self, base_id: str) -> Any:
        """The tokenizer of a served base (loads the base on first use)."""
        return self.engine(base_id)[0].tokenizer

    def pin(self, viewer: User | None, ref: str) -> str:
        """Keep adapter ``ref`` in both cache tiers (loaded now into host memory); returns its key."""
        key, ad, row, ver = self.adapter(viewer, ref, None, ref)
        if ad is None:
            raise InvalidInputError(f"{ref} is a {row.kind}, not an adapter; only adapters can be pinned")
        self.cpu.pin(key)
        self.engine(ver.base_model)[1].pin(key)
        return key

    # -- listing --------------------------------------------------------------------------------
    def available(self, viewer: User | None, limit: int = 1000) -> list[dict[str, Any]]:
        """Bases and visible adapters as OpenAI model objects (adapters carry ``parent`` and ``root``)."""
        out: list[dict[str, Any]] = []
        for b in self.served_bases():
            if any(o["id"] == b.model_id for o in out):
                continue
            out.append({"id": b.model_id, "object": "model", "created": int(b.created_at.timestamp()),
                        "owned_by": "loom", "parent": None, "root": b.model_id, "loom": {"kind": "base"}})
        offset = 0
        while len(out) < limit:
            rows, total = self.hub.adapters.list(viewer, offset=offset, limit=200)
            for a in rows:
                out.append({"id": f"{a.namespace}/{a.name}", "object": "model",
                            "created": int(a.created_at.timestamp()), "owned_by": a.namespace,
                            "parent": a.base_model, "root": f"{a.namespace}/{a.name}@{a.latest_version}",
                            "loom": {"kind": a.kind, "description": a.description}})
            offset += len(rows)
            if not rows or offset >= total:
                break
        return out

    # -- resolution -----------------------------------------------------------------------------
    def _unknown(self, viewer: User | None, model: str) -> NotFoundError:
        return unknown_model(model, [m["id"] for m in self.available(viewer, limit=200)])

    def _base_row(self, base_id: str, viewer: User | None, model: str) -> Any:
        row = self.hub.base_models.find(base_id)
        if row is None:
            raise self._unknown(viewer, model)
        return row

    def adapter(self, viewer: User | None, ref: str, base_id: str | None, model: str) -> tuple[str, LoraAdapter,
                                                                                                 Any, Any]:
        """Resolve an adapter ref to (key, LoraAdapter, adapter row, version row), checked against the base."""
        from hub.core.compat import check_against_base

        parsed = AdapterRef.try_parse(ref)
        if parsed is None:
            raise self._unknown(viewer, model)
        name, number = parsed.full_name, parsed.version
        ns, nm = parsed.namespace, parsed.name
        try:
            row = self.hub.adapters.get(viewer, ns, nm)
            ver = self.hub.adapters.version(viewer, ns, nm, number)
        except NotFoundError:
            if number is not None:
                raise NotFoundError(f"adapter {name} has no version {number} (or is not visible)",
                                    model=model) from None
            raise self._unknown(viewer, model) from None
        key = f"{name}@{ver.number}"
        if row.kind != "adapter":
            return key, None, row, ver  # type: ignore[return-value]  # routers: the caller dispatches
        check_base(key, ver.base_model, base_id or ver.base_model)
        ad = self.cpu.get(key, lambda: self.hub.adapters.load(viewer, name, ver.number)[0], tag=ver.sha256)
        bid = base_id or ver.base_model
        if (key, ver.sha256, bid) not in self._checked:
            base = self.hub.base_models.find(bid)
            if base is None:
                raise NotFoundError(
                    f"{key} is an adapter for base model {bid}, which is not registered on this hub; register it "
                    f"with `loom base add {bid} --config config.json --weights DIR` to serve it", model=model)
            check_against_base(ad, self.hub.base_models.shapes(base), bid)
            self._checked.add((key, ver.sha256, bid))
        return key, ad, row, ver

    def resolve(self, viewer: User | None, model: str, merged: MergedAdapters | None = None,
                route_text: str | None = None) -> Plan:
        """``model`` (+ ``merged_adapters``) -> a :class:`Plan`.

        Raises:
            NotFoundError: unknown model (the message lists what exists). IncompatibleAdaptersError:
            an adapter for another base. InvalidInputError: malformed ids or mixtures.
        """
        base_id, rest = split_model(model)
        if base_id is None and rest != AUTO and self.hub.base_models.find(rest) is not None:
            base_id, rest = rest, ""
        if base_id is not None:
            base_row = self._base_row(base_id, viewer, model)
        if merged is not None:
            if rest not in ("", AUTO):
                raise InvalidInputError("with merged_adapters, model must name the base model (or 'auto'), got "
                                        f"{model!r}", field="model")
            base_id = base_id or self.default_base()
            base_row = self._base_row(base_id, viewer, model)
            plan = Plan(base_id, base_row, route="mixture")
            for ref, w in zip(merged.ids, merged.weights, strict=True):
                key, ad, row, _ = self.adapter(viewer, ref, base_id, model)
                if ad is None:
                    raise InvalidInputError(f"{ref} is a {row.kind}, not an adapter; it cannot be in a mixture",
                                            field="merged_adapters.ids")
                plan.mixture[key] = plan.mixture.get(key, 0.0) + w
                plan.adapters[key] = ad
            return plan
        if rest == "":
            return Plan(base_id, base_row)  # type: ignore[arg-type]
        if rest == AUTO:
            base_id = base_id or self.default_base()
            return self.auto(viewer, self._base_row(base_id, viewer, model), route_text or "")
        key, ad, row, ver = self.adapter(viewer, rest, base_id, model)
        if ad is None:
            from hub.services.inference.routers import router_plan

            return router_plan(self, viewer, key, row, ver, base_id, model)
        bid = base_id or ver.base_model
        return Plan(bid, self._base_row(bid, viewer, model), {key: 1.0}, {key: ad}, route="adapter")

    def auto(self, viewer: User | None, base_row: Any, text: str) -> Plan:
        """The semantic router (spec routers §8.2): top-k adapters of the base above the threshold, else base."""
        import numpy as np
        import torch

        from hub.repositories.adapters import AdapterFilters
        from hub.services.search import MAX_QUERY
        from routing.routers.semantic import SemanticConfig, SemanticRouter

        s = self.settings
        plan = Plan(base_row.model_id, base_row, route="auto", scores={})
        query = text.strip()[-MAX_QUERY:]
        if not query:
            return plan
        qvec = torch.from_numpy(self.hub.search.embed([query]))  # (1, d), embedded once
        hits = self.hub.search.search(viewer, query, k=max(8, s.semantic_router_k),
                                      filters=AdapterFilters(base_model=base_row.model_id, kind="adapter"),
                                      vector=qvec[0].numpy())
        hits = [h for h in hits if h.adapter.embedding is not None]
        if not hits:
            return plan
        vecs = torch.from_numpy(np.stack([self._adapter_vector(viewer, h.adapter) for h in hits]))
        router = SemanticRouter(vecs, SemanticConfig(k=s.semantic_router_k, threshold=s.semantic_router_threshold,
                                                     temperature=s.semantic_router_temperature))
        decision = router.route(qvec)[0]
        names = [f"{h.adapter.namespace}/{h.adapter.name}" for h in hits]
        plan.scores = {n: round(float(c), 6) for n, c in zip(names, decision.scores, strict=True)}
        for i, w in zip(decision.indices, decision.weights, strict=True):
            key, ad, _, _ = self.adapter(viewer, names[i], base_row.model_id, AUTO)
            plan.mixture[key], plan.adapters[key] = float(w), ad
        return plan

    def _adapter_vector(self, viewer: User | None, row: Any) -> Any:
        """An adapter's routing vector: its card embedding, plus (setting ``semantic_router_exemplars``) the
        mean embedding of its sample prompts; exemplars beat free text when both exist (spec routers §8.2)."""
        import numpy as np

        card = np.frombuffer(row.embedding, dtype=np.float32)
        if not self.settings.semantic_router_exemplars:
            return card
        key = (int(row.id), int(row.latest_version))
        if key not in self._exemplars:
            self._exemplars[key] = self._exemplar(viewer, row)
        ex = self._exemplars[key]
        if ex is None:
            return card
        both = card / max(float(np.linalg.norm(card)), 1e-12) + ex
        return (both / max(float(np.linalg.norm(both)), 1e-12)).astype(np.float32)

    def _exemplar(self, viewer: User | None, row: Any, most: int = 16) -> Any:
        """Unit mean embedding of up to ``most`` sample prompts of the adapter's latest version, or None."""
        import numpy as np

        from hub.services.validation import parse_samples
        from routing.train import request_text

        ver = self.hub.adapters.version(viewer, row.namespace, row.name)
        entry = (ver.files or {}).get("samples.jsonl")
        if entry is None:
            return None
        rows = parse_samples(self.hub.blobs.read_bytes(entry["key"]))  # validated at publish
        prompts = [t for t in (request_text(r["input"]) for r in rows) if t][:most]
        if not prompts:
            return None
        mean = self.hub.search.embed(prompts).mean(0)
        return (mean / max(float(np.linalg.norm(mean)), 1e-12)).astype(np.float32)

    # -- generation -----------------------------------------------------------------------------
    def complete(self, viewer: User | None, req: CompletionRequest) -> CompletionResult:
        """Generate ``req.n`` completions per prompt; all rows go through the batchers concurrently.

        Raises:
            ContextLengthError: a prompt that does not fit. InvalidInputError: bad parameters.
            plus every error of :meth:`resolve`.
        """
        return self._collect(self._submit(viewer, req), req)

    def stream(self, viewer: User | None, req: CompletionRequest) -> Iterator[tuple[int, str] | CompletionResult]:
        """Like :meth:`complete`, but yields ``(choice index, text piece)`` as tokens are generated, then the
        :class:`CompletionResult`. Every request error is raised HERE, before the first piece.
        """
        pending = self._submit(viewer, req, stream=True)
        return self._events(pending, req)

    def _events(self, pending: list[Any], req: CompletionRequest) -> Iterator[tuple[int, str] | CompletionResult]:
        import queue

        for i, (plan, _ids, fut, q) in enumerate(pending):
            if q is None:  # router rows are not streamed token by token
                continue
            lb = self.engine(plan.base_id)[0]
            dec = IncrementalText(lb.tokenizer, req.stop)
            while True:
                try:
                    tok = q.get(timeout=600)
                except queue.Empty:
                    break
                if tok is None:
                    break
                piece = dec.add(tok)
                if piece:
                    yield i, piece
            pending[i] = (plan, _ids, fut, dec)
        res = self._collect(pending, req)
        for i, c in enumerate(res.choices):
            dec = pending[i][3]
            sent = dec.sent if isinstance(dec, IncrementalText) else ""
            rest = c.text[len(sent):] if c.text.startswith(sent) else ""
            if rest:
                yield i, rest
        yield res

    def _submit(self, viewer: User | None, req: CompletionRequest, stream: bool = False) -> list[Any]:
        import queue

        from hub.services.inference.batcher import Job

        s = self.settings
        if not req.prompts or len(req.prompts) > s.inference_max_batch * 8:
            raise InvalidInputError(f"prompt must be a string or 1-{s.inference_max_batch * 8} strings",
                                    field="prompt")
        if not 1 <= req.n <= 16:
            raise InvalidInputError(f"n must be in 1..16, got {req.n}", field="n")
        if req.max_tokens is not None and not 1 <= req.max_tokens <= s.inference_max_tokens:
            raise InvalidInputError(f"max_tokens must be in 1..{s.inference_max_tokens}, got {req.max_tokens}",
                                    field="max_tokens")
        if not 0.0 <= req.temperature <= 2.0 or not 0.0 < req.top_p <= 1.0:
            raise InvalidInputError("temperature must be in [0, 2] and top_p in (0, 1]", field="temperature")
        texts = req.route_texts or req.prompts
        static = None if (req.merged is None and split_model(req.model)[1] == AUTO) else \
            self.resolve(viewer, req.model, req.merged)
        work: list[tuple[Plan, list[int], int]] = []
        for prompt, text in zip(req.prompts, texts, strict=True):
            plan = static or self.resolve(viewer, req.model, None, text)
            lb = self.engine(plan.base_id)[0]
            ids = encode_prompt(lb.tokenizer, prompt)
            if not ids:
                raise InvalidInputError("prompt must not be empty", field="prompt")
            room = lb.context - len(ids)
            if room < 1 or (req.max_tokens is not None and req.max_tokens > room):
                raise ContextLengthError(
                    f"this model's context is {lb.context} tokens; the prompt has {len(ids)} and "
                    f"{req.max_tokens or 1} more were requested", context=lb.context, prompt_tokens=len(ids))
            work.append((plan, ids, req.max_tokens or min(room, s.inference_max_tokens)))
        pending: list[Any] = []
        for plan, ids, new in work:
            for _ in range(req.n):
                if plan.route == "router":
                    pending.append((plan, ids, self.routers.submit(plan, ids, new, req), None))
                    continue
                q: queue.Queue[int | None] | None = queue.Queue() if stream else None
                job = Job(ids, dict(plan.mixture), dict(plan.adapters), new, req.temperature, req.top_p, req.seed,
                          tokens=q)
                pending.append((plan, ids, self.engine(plan.base_id)[2].submit(job), q))
        return pending

    def _collect(self, pending: list[Any], req: CompletionRequest) -> CompletionResult:
        choices = []
        for i, (plan, ids, fut, _) in enumerate(pending):
            r = fut.result(timeout=600)
            tok = self.engine(plan.base_id)[0].tokenizer
            text = tok.decode(r.tokens, skip_special_tokens=True)
            finish = r.finish_reason
            cut = min((text.find(st) for st in req.stop if st and st in text), default=-1)
            if cut >= 0:
                text, finish = text[:cut], "stop"
            choices.append(Choice(i, text, finish, len(ids), len(r.tokens), r.adapters, plan.route, plan.scores,
                                  r.batch_size, gate_weights=r.gate_weights, tokens=list(r.tokens)))
        first = pending[0][0]
        res = CompletionResult(model=req.model, base=first.base_id, choices=choices)
        res._n, res.router = req.n, first.router
        return res

    def stats(self) -> dict[str, Any]:
        """Counters for tests and /metrics-like views."""
        with self._lock:
            engines = dict(self._bases)
        return {"cpu_cached": self.cpu.keys(), "cold_load_seconds": dict(self.cpu.load_seconds),
                "bases": {k: {"generate_calls": b.generate_calls, "rows_served": b.rows_served,
                              "resident": g.resident(), "batch_sizes": list(b.batch_sizes[-100:])}
                          for k, (lb, g, b) in engines.items()}}

