"""The inference service: resolve ``model``, tokenize, batch, generate, report adapters and weights.

One :class:`InferenceService` per process (the composition root builds it on first use). It joins the
parts of :mod:`hub.services.inference`: the served bases (:class:`~.engines.BaseEngines`), what a
request's ``model`` means (:class:`~.resolver.Resolver`, with ``auto``'s :class:`~.auto.AutoRouter`),
the adapter caches (:mod:`~.cache`) and routed requests (:class:`~.routers.RouterRunner`).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator, Iterator
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError
from hub.services.inference.messages import (
    Choice,
    CompletionRequest,
    CompletionResult,
    ContextLengthError,
    IncrementalText,
    TokenQueue,
)
from hub.services.inference.resolve import AUTO, MergedAdapters, Plan, split_model

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.adapters import AdapterService
    from hub.services.base_models import BaseModelService
    from hub.services.metrics import Metrics
    from hub.services.search import SearchService
    from hub.settings import Settings


def encode_prompt(tokenizer: Any, prompt: str, add_special_tokens: bool = True) -> list[int]:
    """Token ids of a prompt: exactly what ``tokenizer(prompt)`` gives, as transformers and vLLM encode it.

    A base whose model needs BOS first gets it from its own tokenizer (Llama's and the testbed's add it
    themselves; SmolLM2's adds none and was trained without). Chat prompts rendered from a chat template
    are encoded with ``add_special_tokens=False``: the template writes any BOS itself.
    """
    return list(tokenizer(prompt, add_special_tokens=add_special_tokens)["input_ids"])


class InferenceService:
    """Serve registered bases and adapters.

    Args:
        settings: inference settings. adapters: reads adapters and routers. base_models: the registered bases.
        search: embeddings (``auto``, routers that read the request's embedding). metrics: the registry
        ``/metrics`` serves (the ``vllm:lora_requests_info`` gauge). device: force ``cpu``/``cuda``.
    """

    def __init__(self, settings: Settings, adapters: AdapterService, base_models: BaseModelService,
                 search: SearchService, metrics: Metrics, device: str | None = None) -> None:
        from hub.services.inference import metrics as inference_metrics
        from hub.services.inference.admission import UserLimits
        from hub.services.inference.auto import AutoRouter
        from hub.services.inference.cache import CpuTier
        from hub.services.inference.engines import BaseEngines
        from hub.services.inference.resolver import Resolver

        self.settings, self.adapters, self.search = settings, adapters, search
        self.cpu = CpuTier(settings.adapter_cache_cpu)
        self.serving_metrics = inference_metrics.serving_metrics(metrics.registry)
        self.engines = BaseEngines(settings, base_models, device, self.serving_metrics)
        self.user_limits = UserLimits(settings.inference_max_concurrent_per_user)
        self.resolver = Resolver(adapters, base_models, self.engines, self.cpu, AutoRouter(settings, adapters, search))
        self._lock = threading.Lock()
        self._routers: Any = None
        # (viewer id, model) -> the base its last plan ran on: a request for it is turned away before it is
        # resolved when that base's scheduler is at its bound (per viewer: what a name means depends on who asks)
        self._bases_seen: dict[tuple[int | None, str], str] = {}
        self._seen_lock = threading.Lock()
        self._metrics = metrics
        self._collector = inference_metrics.register(
            metrics.registry, self.engines, settings.adapter_cache_gpu,
            lambda: self._routers.schedulers() if self._routers is not None else {})

    @property
    def routers(self) -> Any:
        """The :class:`~hub.services.inference.routers.RouterRunner` (built on first use)."""
        from hub.services.inference.routers import RouterRunner

        with self._lock:
            if self._routers is None:
                self._routers = RouterRunner(self.engines, self.adapters, self.search.embed)
            return self._routers

    # -- bases and models -----------------------------------------------------------------------
    def engine(self, base_id: str) -> Any:
        """The :class:`~hub.services.inference.engines.Engine` ``(base, gpu, batcher)`` of ``base_id``."""
        return self.engines.get(base_id)

    def default_base(self) -> str:
        return self.engines.default_base()

    def base_for(self, model: str) -> str:
        """The base a ``<base>:auto`` / ``auto`` / mixture request runs on."""
        return self.engines.base_for(model)

    def tokenizer(self, base_id: str) -> Any:
        """The tokenizer of a served base (loads the base on first use)."""
        return self.engines.get(base_id).base.tokenizer

    def available(self, viewer: User | None, limit: int = 1000) -> list[dict[str, Any]]:
        """Bases and visible adapters as OpenAI model objects."""
        return self.resolver.models(viewer, limit)

    def model(self, viewer: User | None, model_id: str) -> dict[str, Any]:
        """One model of :meth:`available`, by id (NotFoundError listing what exists)."""
        return self.resolver.model(viewer, model_id)

    def resolve(self, viewer: User | None, model: str, merged: MergedAdapters | None = None,
                route_text: str | None = None) -> Plan:
        """See :meth:`hub.services.inference.resolver.Resolver.resolve`."""
        return self.resolver.resolve(viewer, model, merged, route_text)

    def pin(self, viewer: User | None, ref: str) -> str:
        """Keep adapter ``ref`` in both cache tiers (loaded now into host memory); returns its key."""
        key, ad, row, ver = self.resolver.adapter(viewer, ref, None, ref)
        if ad is None:
            raise InvalidInputError(f"{ref} is a {row.kind}, not an adapter; only adapters can be pinned")
        self.cpu.pin(key)
        self.engines.get(ver.base_model).gpu.pin(key)
        return key

    def close(self) -> None:
        """Stop the batchers and the router runner; take the metrics collector off the registry."""
        from hub.services.inference import metrics as inference_metrics

        self.engines.close()
        if self._routers is not None:
            self._routers.close()
        inference_metrics.unregister(self._metrics.registry, self._collector)
        self._collector = None

    # -- generation -----------------------------------------------------------------------------
    def complete(self, viewer: User | None, req: CompletionRequest,
                 cancel: threading.Event | None = None) -> CompletionResult:
        """Generate ``req.n`` completions per prompt; all rows go through the batchers concurrently.

        ``cancel``, once set (the client left), frees the request's rows at the next step.

        Raises:
            ContextLengthError: a prompt that does not fit. InvalidInputError: bad parameters.
            PayloadTooLargeError: more rows than ``inference_max_rows_per_request``.
            TooManyRequestsError: the queue is full. RequestCancelledError: ``cancel`` was set.
            plus every error of :meth:`resolve`.
        """
        return self._collect(self._submit(viewer, req, cancel=cancel), req)

    async def acomplete(self, viewer: User | None, req: CompletionRequest,
                        cancel: threading.Event | None = None) -> CompletionResult:
        """:meth:`complete` on the caller's event loop: the rows are queued in a worker thread (resolving may
        load a base), then awaited without holding one."""
        import asyncio

        pending = await asyncio.to_thread(self._submit, viewer, req, False, cancel)
        await asyncio.gather(*(asyncio.wrap_future(p[2]) for p in pending))
        return self._collect(pending, req)

    async def astream(self, viewer: User | None, req: CompletionRequest,
                      cancel: threading.Event | None = None) -> AsyncIterator[tuple[int, str] | CompletionResult]:
        """Like :meth:`acomplete`, but the iterator it returns yields ``(choice index, text piece)`` as tokens are
        generated, then the :class:`CompletionResult`. Tokens are awaited on the caller's event loop
        (:meth:`TokenQueue.drain`), never waited for in a thread, so concurrent streams are not capped by a thread
        pool; the tokens that arrived since the last piece go out as one. A row's first tokens always give a piece,
        ``""`` when their text is held back (a partial UTF-8 character, a possible stop string; vLLM's server sends
        such chunks too), so a client sees its first token when it is generated, not when its first character is
        final (on a byte-level tokenizer that can be many tokens later). Every request error is raised when this
        is awaited, before the first piece."""
        import asyncio

        pending = await asyncio.to_thread(self._submit, viewer, req, True, cancel)
        return self._aevents(pending, req)

    async def _aevents(self, pending: list[Any], req: CompletionRequest) -> AsyncIterator[tuple[int, str] |
                                                                                          CompletionResult]:
        """The stream's events: the choices' pieces interleaved as their rows generate them (each choice's queue
        is read by a task of its own; the rows run in the same steps, so a choice's first token does not wait for
        the choices before it to end), then the last pieces and the result."""
        import asyncio

        events: asyncio.Queue[tuple[int, str] | Exception | None] = asyncio.Queue()

        async def read(i: int, q: TokenQueue, dec: IncrementalText) -> None:
            try:
                first = True
                while True:
                    try:
                        toks = await q.drain(600)
                    except TimeoutError:
                        break
                    piece = "".join(dec.add(t) for t in toks if t is not None)
                    if piece or (first and toks[0] is not None):
                        first = False
                        events.put_nowait((i, piece))
                    if toks[-1] is None:
                        break
                events.put_nowait(None)
            except Exception as e:  # noqa: BLE001 - raised again by the stream's reader
                events.put_nowait(e)

        readers = []
        for i, (plan, ids, fut, q) in enumerate(pending):
            if q is None:  # router rows are not streamed token by token
                continue
            dec = IncrementalText(self.engines.get(plan.base_id).base.tokenizer, req.stop)
            pending[i] = (plan, ids, fut, dec)  # what the stream sent, for its last pieces (_ending)
            readers.append(asyncio.ensure_future(read(i, q, dec)))
        try:
            live = len(readers)
            while live:
                ev = await events.get()
                if isinstance(ev, tuple):
                    yield ev
                elif ev is None:
                    live -= 1
                else:
                    raise ev
        finally:  # the client left (or a reader failed): stop reading the other choices' queues
            for r in readers:
                r.cancel()
        await asyncio.gather(*(asyncio.wrap_future(p[2]) for p in pending))
        for last in self._ending(pending, self._collect(pending, req)):
            yield last

    @staticmethod
    def _ending(pending: list[Any], res: CompletionResult) -> Iterator[tuple[int, str] | CompletionResult]:
        """A stream's last events: each choice's text not sent yet (a router row's whole text), then the result."""
        for i, c in enumerate(res.choices):
            dec = pending[i][3]
            sent = dec.sent if isinstance(dec, IncrementalText) else ""
            rest = c.text[len(sent):] if c.text.startswith(sent) else ""
            if rest:
                yield i, rest
        yield res

    def _submit(self, viewer: User | None, req: CompletionRequest, stream: bool = False,
                cancel: threading.Event | None = None) -> list[Any]:
        from hub.core.errors import PayloadTooLargeError
        from hub.services.inference.batcher import Job

        s = self.settings
        if not req.prompts or len(req.prompts) > s.inference_max_batch * 8:
            raise InvalidInputError(f"prompt must be a string or 1-{s.inference_max_batch * 8} strings",
                                    field="prompt")
        if not 1 <= req.n <= 16:
            raise InvalidInputError(f"n must be in 1..16, got {req.n}", field="n")
        rows = req.n * len(req.prompts)
        if rows > s.inference_max_rows_per_request:
            raise PayloadTooLargeError(
                f"n x prompts is {rows} rows, over the limit of {s.inference_max_rows_per_request} rows per "
                "request (LOOM_INFERENCE_MAX_ROWS_PER_REQUEST)", field="n", limit=s.inference_max_rows_per_request)
        if req.max_tokens is not None and not 1 <= req.max_tokens <= s.inference_max_tokens:
            raise InvalidInputError(f"max_tokens must be in 1..{s.inference_max_tokens} (the hub's "
                                    f"LOOM_INFERENCE_MAX_TOKENS), got {req.max_tokens}",
                                    field="max_tokens")
        if not 0.0 <= req.temperature <= 2.0 or not 0.0 < req.top_p <= 1.0:
            raise InvalidInputError("temperature must be in [0, 2] and top_p in (0, 1]", field="temperature")
        texts = req.route_texts or req.prompts
        seen = (viewer.id if viewer is not None else None, req.model)
        if req.merged is None:
            self._precheck(seen, rows)
        static = None if (req.merged is None and split_model(req.model)[1] == AUTO) else \
            self.resolver.resolve(viewer, req.model, req.merged)
        if static is not None and req.merged is None and static.route != "router":
            self._saw(seen, static.base_id)
        work: list[tuple[Plan, list[int], int]] = []
        for prompt, text in zip(req.prompts, texts, strict=True):
            plan = static or self.resolver.resolve(viewer, req.model, None, text)
            lb = self.engines.get(plan.base_id).base
            ids = encode_prompt(lb.tokenizer, prompt, add_special_tokens=not req.chat)
            if not ids:
                raise InvalidInputError("prompt must not be empty", field="prompt")
            room = lb.context - len(ids)
            if room < 1 or (req.max_tokens is not None and req.max_tokens > room):
                raise ContextLengthError(
                    f"this model's context is {lb.context} tokens; the prompt has {len(ids)} and "
                    f"{req.max_tokens or 1} more were requested", context=lb.context, prompt_tokens=len(ids))
            work.append((plan, ids, req.max_tokens or min(room, s.inference_max_tokens)))
        cancel = cancel or threading.Event()
        slots: list[Any] = []
        per_batcher: dict[int, tuple[Any, list[Any]]] = {}  # a base's batcher or a router's scheduler -> its rows
        for plan, ids, new in work:
            routed = plan.route == "router"  # a router row: its routing inputs; counted under the router's key
            batcher = self.routers.scheduler(plan) if routed else self.engines.get(plan.base_id).batcher
            if batcher is None:  # a router that runs one request at a time
                slots.extend((plan, ids, new, None, None) for _ in range(req.n))
                continue
            routing = self.routers.inputs(batcher, plan, ids) if routed else {}
            mixture, adapters = ({plan.router or "": 1.0}, {}) if routed else (plan.mixture, plan.adapters)
            for _ in range(req.n):
                q = TokenQueue(s.inference_stream_interval) if stream else None
                job = Job(ids, dict(mixture), dict(adapters), new, req.temperature, req.top_p, req.seed, tokens=q,
                          stop=list(req.stop), ignore_eos=req.ignore_eos, cancelled=cancel, routing=routing)
                slots.append((plan, ids, new, job, q))
                per_batcher.setdefault(id(batcher), (batcher, []))[1].append(job)
        try:  # every row of the request is admitted, or none (a 429 leaves nothing queued)
            for batcher, jobs in per_batcher.values():
                batcher.submit_all(jobs)
        except Exception:
            cancel.set()
            raise
        pending: list[Any] = []
        for plan, ids, new, job, q in slots:
            fut = self.routers.submit(plan, ids, new, req) if job is None else job.future
            pending.append((plan, ids, fut, q))
        return pending

    def _precheck(self, seen: tuple[int | None, str], rows: int) -> None:
        """Refuse (429) a request whose model ran on a base whose scheduler would refuse even its least work
        (:meth:`~hub.services.inference.scheduler.Scheduler.precheck`), before resolving it: under overload a
        refusal then costs no registry reads. A model not seen yet, or a base not loaded, is not prechecked."""
        base_id = self._bases_seen.get(seen)
        engine = self.engines.loaded().get(base_id) if base_id is not None else None
        if engine is not None:
            engine.batcher.precheck(rows)

    def _saw(self, seen: tuple[int | None, str], base_id: str) -> None:
        if self._bases_seen.get(seen) == base_id:  # the common case: nothing changes, no lock
            return
        with self._seen_lock:
            self._bases_seen[seen] = base_id
            if len(self._bases_seen) > 4096:  # the first remembered goes first
                del self._bases_seen[next(iter(self._bases_seen))]

    def _collect(self, pending: list[Any], req: CompletionRequest) -> CompletionResult:
        choices = []
        for i, (plan, ids, fut, _) in enumerate(pending):
            r = fut.result(timeout=600)
            tok = self.engines.get(plan.base_id).base.tokenizer
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
        return {"cpu_cached": self.cpu.keys(), "cold_load_seconds": dict(self.cpu.load_seconds),
                "bases": {k: {"generate_calls": b.generate_calls, "rows_served": b.rows_served,
                              "resident": g.resident(), "batch_sizes": list(b.batch_sizes[-100:])}
                          for k, (lb, g, b) in self.engines.loaded().items()}}

