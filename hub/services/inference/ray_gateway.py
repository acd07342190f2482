"""The API process as the gateway of Ray Serve replicas (``LOOM_INFERENCE=ray``): the inference service the OpenAI
routes use, without an engine of its own.

The gateway keeps what belongs to the API: authentication (the routes), resolution of ``model`` as the viewer sees
the registry (an invisible adapter is a 404 here, before any replica is involved), the OpenAI surface and SSE.
It computes the request's affinity key (:func:`affinity_key`) and calls the Serve deployment
(:mod:`hub.services.inference.ray_serve`) through a handle with ``multiplexed_model_id=key``; streaming goes
through the handle too. Requests in flight are awaited on the event loop (Serve's responses are awaitable from any
loop), so they hold no thread. Chat templates need only the base's tokenizer, which the gateway loads alone (no weights).

Faults: an error a replica raised on purpose (bad input, unknown model) reaches the client as itself; a replica
that dies mid-request, or a cluster that does not answer, is a :class:`~hub.core.errors.ClusterUnavailableError`
(503; inside an SSE stream, an error event), never a hang: every call has a deadline. Serve replaces the replica
and later requests succeed.

Metrics: every answer carries its replica's state; the gateway exports the last state of each replica as the
``vllm:lora_requests_info`` gauge with a ``replica`` label (plus ``loom_inference_replica_loads``), on the hub's
own registry (``/metrics``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from hub.core.errors import ClusterUnavailableError, LoomError
from hub.core.refs import AdapterRef
from hub.services.inference.admission import UserLimits
from hub.services.inference.resolve import AUTO, split_model, unknown_model

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.services.adapters import AdapterService
    from hub.services.base_models import BaseModelService
    from hub.services.inference.ray_serve import ReplicaFactory
    from hub.services.metrics import Metrics
    from hub.services.ray_cluster import RayConnection
    from hub.settings import Settings

#: seconds a request waits for its replica before it is answered 503 (a replica that died mid-request)
REQUEST_TIMEOUT_S = 600.0
#: calls to cancel a request by id beyond one per replica before the gateway gives up
CANCEL_TRIES = 3


def affinity_key(adapters: AdapterService, viewer: User | None, model: str, merged: Any = None,
                 base_id: str | None = None) -> str:
    """The multiplexed model id of a request: what a replica has to load to serve it.

    ``ns/name[@v]`` (an adapter or a router): the version's content hash; ``merged_adapters``: ``mix:`` + sha256 of
    the base and the sorted (pinned ref, content hash, weight) triples, so a mixture has affinity too; a bare base
    or ``auto``: ``base:<id>`` (``base_id``: the base such a request runs on). Raises NotFoundError for what the
    viewer may not see.
    """
    _, rest = split_model(model)
    if merged is not None:
        parts = []
        for ref, w in zip(merged.ids, merged.weights, strict=True):
            r = AdapterRef.parse(ref)
            ver = adapters.version(viewer, r.namespace, r.name, r.version)
            parts.append([f"{r.full_name}@{ver.number}", ver.sha256, float(w)])
        recipe = json.dumps({"base": base_id, "mixture": sorted(parts), "strategy": merged.merge_strategy},
                            sort_keys=True)
        return "mix:" + hashlib.sha256(recipe.encode()).hexdigest()
    ref = AdapterRef.try_parse(rest) if base_id is None and rest and rest != AUTO else None
    if ref is None:
        return f"base:{base_id}"
    return adapters.version(viewer, ref.namespace, ref.name, ref.version).sha256


class RayInference:
    """The gateway: the same calls as :class:`~hub.services.inference.InferenceService` that the routes make.

    Args:
        settings: the deployment's settings. adapters, base_models: the registry. metrics: the hub's registry.
        connection: this process's Ray connection.
    """

    def __init__(self, settings: Settings, adapters: AdapterService, base_models: BaseModelService, metrics: Metrics,
                 connection: RayConnection, build_replica: ReplicaFactory) -> None:
        from hub.services.inference.engines import BaseEngines
        from hub.services.inference.resolver import Resolver

        self.settings, self.adapters, self.base_models, self.connection = settings, adapters, base_models, connection
        # per-caller concurrency is bounded at the gateway, as in-process (the replicas bound their own batches)
        self.user_limits = UserLimits(settings.inference_max_concurrent_per_user)
        self.build_replica = build_replica
        self.engines = BaseEngines(settings, base_models)  # bases by id only: the gateway loads no model
        self.resolver = Resolver(adapters, base_models, self.engines, None, None)  # type: ignore[arg-type]
        self.handle: Any = None
        self.num_replicas = settings.inference_replicas  # as deployed (start's ``replicas`` may say otherwise)
        self.replicas: dict[str, dict[str, Any]] = {}
        self.served_by: dict[str, str] = {}  # affinity key -> the replica that answered it last
        self._first: dict[str, threading.Event] = {}  # keys whose first request is in flight
        self._tokenizers: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._metrics = metrics
        self._collector: ReplicaCollector | None = ReplicaCollector(self)
        metrics.registry.register(self._collector)

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self, **app_options: Any) -> None:
        """Join the cluster (ClusterUnavailableError naming LOOM_RAY_ADDRESS) and deploy or update the replicas.

        Args:
            app_options: :func:`~hub.services.inference.ray_serve.build_app` keywords (replicas, own_data_dir ...).
        """
        from hub.services.inference.ray_serve import APP_NAME, build_app

        self.connection.connect()
        from ray import serve

        serve.start(proxy_location="Disabled")  # handles only: no HTTP proxy next to the API's port
        self.num_replicas = app_options.get("replicas") or self.settings.inference_replicas
        self.handle = serve.run(build_app(self.settings, self.build_replica, **app_options), name=APP_NAME,
                                route_prefix=None)

    def close(self) -> None:
        """Take the replica gauge off the registry (the Serve application stays up for other gateways)."""
        if self._collector is not None:
            self._metrics.registry.unregister(self._collector)
            self._collector = None

    # -- what the routes ask before generating ---------------------------------------------------
    def default_base(self) -> str:
        return self.engines.default_base()

    def base_for(self, model: str) -> str:
        return self.engines.base_for(model)

    def available(self, viewer: User | None, limit: int = 1000) -> list[dict[str, Any]]:
        return self.resolver.models(viewer, limit)

    def model(self, viewer: User | None, model_id: str) -> dict[str, Any]:
        """One model of :meth:`available`, by id (NotFoundError listing what exists)."""
        return self.resolver.model(viewer, model_id)

    def resolve(self, viewer: User | None, model: str, merged: Any = None, route_text: str | None = None) -> Any:
        """What the gateway needs of a plan: ``base_id`` (checked as the viewer sees the registry)."""
        base, rest = split_model(model)
        if merged is not None or rest == AUTO:
            return SimpleNamespace(base_id=self.base_for(model))
        if base is None and self.base_models.find(rest) is not None:
            return SimpleNamespace(base_id=rest)
        ref = AdapterRef.try_parse(rest)
        if ref is None:
            raise unknown_model(model, [m["id"] for m in self.available(viewer, 200)])
        ver = self.adapters.version(viewer, ref.namespace, ref.name, ref.version)
        return SimpleNamespace(base_id=base or ver.base_model)

    def tokenizer(self, base_id: str) -> Any:
        """The base's tokenizer alone (chat templates), loaded once."""
        from transformers import AutoTokenizer

        from hub.services.inference.models import weights_folder

        with self._lock:
            if base_id not in self._tokenizers:
                row = self.base_models.get(base_id)
                self._tokenizers[base_id] = AutoTokenizer.from_pretrained(str(weights_folder(row.model_id,
                                                                                              row.weights)))
            return self._tokenizers[base_id]

    # -- generation through the replicas ---------------------------------------------------------
    def _key(self, viewer: User | None, req: Any) -> str:
        base_id = None
        if req.merged is not None or split_model(req.model)[1] == AUTO:
            base_id = self.base_for(req.model)
        elif self.base_models.find(split_model(req.model)[1]) is not None:
            base_id = split_model(req.model)[1]
        return affinity_key(self.adapters, viewer, req.model, req.merged, base_id)

    def _spec(self, viewer: User | None, req: Any) -> tuple[str, dict[str, Any]]:
        from hub.services.inference.ray_serve import request_spec

        if self.handle is None:
            raise ClusterUnavailableError("inference on Ray is not started (LOOM_INFERENCE=ray)")
        return self._key(viewer, req), request_spec(req, None if viewer is None else viewer.id)

    def _seen(self, key: str, state: dict[str, Any]) -> None:
        with self._lock:
            self.replicas[state["replica"]] = {**state, "seen": time.time()}
            self.served_by[key] = state["replica"]

    async def _gate(self, key: str) -> threading.Event | None:
        """Hold requests for a key no replica has answered yet while its first request is in flight.

        Serve learns which replica holds a key only after the replica loaded it, so concurrent first requests would
        load a new adapter on several replicas. Returns the event to set when this (first) request ends, or None;
        a later request waits for the first one's event (in a thread: only while a new key's first request loads
        it).
        """
        with self._lock:
            if key in self.served_by:
                return None
            first = self._first.get(key)
            if first is None:
                self._first[key] = threading.Event()
                return self._first[key]
        await asyncio.to_thread(first.wait, REQUEST_TIMEOUT_S)
        return None

    def _ungate(self, key: str, event: threading.Event | None) -> None:
        if event is not None:
            with self._lock:
                self._first.pop(key, None)
            event.set()

    async def cancel_by_id(self, key: str, request_id: str) -> tuple[str | None, list[str]]:
        """Cancel the request ``request_id`` on whichever replica runs it, besides Serve's cancel of the call (which
        is lost now and then: :mod:`~hub.services.inference.ray_serve`): the replicas' ``cancel``, each replica
        asked at most once (the router sends each call to one not in ``tried``, those holding ``key`` first:
        :class:`~hub.services.inference.ray_router.LoomRequestRouter`). Returns the replica that ran it (None: none
        did, it had ended) and the replicas that answered "not here", once each replica it knows of did (a call that
        Serve's FIFO routing handed to a replica asked before is asked again, up to :data:`CANCEL_TRIES` times)."""
        tried: list[str] = []
        known = max(self.num_replicas, len(self.replicas))
        for _ in range(known + CANCEL_TRIES):
            try:
                call = self.handle.cancel.remote(request_id, key=key, tried=tuple(tried))
                found, replica = await asyncio.wait_for(call, 30)
            except Exception:  # noqa: BLE001 - no replica answered: a dead one took the request's rows with it
                break
            if found:
                return replica, tried
            if replica not in tried:
                tried.append(replica)
            if len(tried) >= known:
                break
        return None, tried

    def _by_id(self, key: str, request_id: str) -> Callable[[], None]:
        """:meth:`cancel_by_id` as a callable from any thread (it runs on this event loop)."""
        loop = asyncio.get_running_loop()

        async def send() -> None:
            await self.cancel_by_id(key, request_id)

        def fire() -> None:
            try:
                asyncio.run_coroutine_threadsafe(send(), loop)
            except RuntimeError:  # the loop has closed: so has the server
                pass

        return fire

    async def acomplete(self, viewer: User | None, req: Any, cancel: threading.Event | None = None) -> Any:
        """Generate on the replica that holds the request's key, awaiting the Serve call on the event loop (no
        thread waits for it). Raises what the replica raised on purpose, or ClusterUnavailableError when the
        replica died, the cluster did not answer or the deadline passed. ``cancel`` (the client left) cancels the
        Serve call: the replica sets its request's cancel event, so its rows leave at the next step."""
        key, spec = await asyncio.to_thread(self._spec, viewer, req)  # registry lookups: SQL
        gate = await self._gate(key)
        try:
            with replica_errors():
                response = self.handle.options(multiplexed_model_id=key).complete.remote(spec)
                watch = CancelForwarder(cancel, response, self._by_id(key, spec["request_id"]))
                try:
                    state, res = await asyncio.wait_for(response, REQUEST_TIMEOUT_S)
                except BaseException:  # the deadline passed, the replica failed, or the route's task was cancelled
                    watch.close(cancel=True)
                    raise
                watch.close()
            self._seen(key, state)
        finally:
            self._ungate(key, gate)
        return res

    async def astream(self, viewer: User | None, req: Any,
                      cancel: threading.Event | None = None) -> AsyncIterator[Any]:
        """Like :meth:`acomplete`, an async iterator of ``(index, piece)`` then the result; request errors are
        raised HERE. A dropped stream (``cancel`` set, or the iterator closed before the end) cancels the
        replica's generator."""
        key, spec = await asyncio.to_thread(self._spec, viewer, req)
        gate = await self._gate(key)
        watch = None
        try:
            with replica_errors():
                gen = self.handle.options(stream=True, multiplexed_model_id=key).stream.remote(spec)
                watch = CancelForwarder(cancel, gen, self._by_id(key, spec["request_id"]))
                first = await asyncio.wait_for(_next(gen), REQUEST_TIMEOUT_S)
        except BaseException:
            if watch is not None:
                watch.close(cancel=True)
            raise
        finally:
            self._ungate(key, gate)  # the replica has loaded the key once its first piece arrived
        assert watch is not None
        return self._events(key, first, gen, watch)

    async def _events(self, key: str, first: Any, gen: Any, watch: CancelForwarder) -> AsyncIterator[Any]:
        ended = False
        try:
            ev = first
            while ev is not None:
                if ev[0] == "result":
                    self._seen(key, ev[2])
                    yield ev[1]
                else:
                    yield ev
                with replica_errors():
                    ev = await _next(gen)
            ended = True
        finally:
            watch.close(cancel=not ended)


async def _next(gen: Any) -> Any:
    """The next item of a Serve response generator, awaited; None at its end."""
    try:
        return await gen.__anext__()
    except StopAsyncIteration:
        return None


class CancelForwarder:
    """Until :meth:`close`, a set ``event`` (the client left) cancels the Serve ``response`` (``ray.cancel`` on the
    replica's call raises CancelledError in it, and the replica sets its request's cancel event) and calls
    ``by_id`` (the replica's own cancel, by request id). The events of every open request are polled every 50 ms by
    one watcher thread of the process (:class:`_CancelWatcher`)."""

    def __init__(self, event: threading.Event | None, response: Any, by_id: Callable[[], None] | None = None) -> None:
        self.event, self.response, self.by_id = event, response, by_id
        self._closed = threading.Event()
        self._lock = threading.Lock()
        if event is not None:
            _WATCHER.add(self)

    def close(self, cancel: bool = False) -> None:
        """Stop watching; ``cancel``: cancel the call unless it was closed already."""
        with self._lock:
            if self._closed.is_set():
                return
            self._closed.set()
        _WATCHER.discard(self)
        if cancel:
            self.response.cancel()
            if self.by_id is not None:
                self.by_id()


class _CancelWatcher:
    """One daemon thread that polls the cancel events of the open :class:`CancelForwarder` s (started at the
    first one; it sleeps while none is open)."""

    PERIOD_S = 0.05

    def __init__(self) -> None:
        self._open: set[CancelForwarder] = set()
        self._cv = threading.Condition()
        self._thread: threading.Thread | None = None

    def add(self, f: CancelForwarder) -> None:
        with self._cv:
            self._open.add(f)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, daemon=True, name="loom-ray-cancel")
                self._thread.start()
            self._cv.notify()

    def discard(self, f: CancelForwarder) -> None:
        with self._cv:
            self._open.discard(f)

    @property
    def watching(self) -> int:
        return len(self._open)

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._open:
                    self._cv.wait()
                fired = [f for f in self._open if f.event is not None and f.event.is_set()]
            for f in fired:
                f.close(cancel=True)
            time.sleep(self.PERIOD_S)


_WATCHER = _CancelWatcher()


class replica_errors:  # noqa: N801 - used as a context manager: `with replica_errors():`
    """Turn what a Serve call raised into Loom's errors: the replica's own LoomError as itself, anything else from
    Ray (the replica died, the cluster went away, the deadline passed) as ClusterUnavailableError."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> bool:
        if exc is None or isinstance(exc, LoomError):
            return False
        cause = getattr(exc, "cause", None)
        if isinstance(cause, LoomError):
            raise cause from None
        if isinstance(exc, StopIteration | StopAsyncIteration | GeneratorExit | asyncio.CancelledError):
            return False
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:300]
        raise ClusterUnavailableError(f"the inference replica failed ({type(exc).__name__}: {first}); retry the "
                                      "request", reason=type(exc).__name__) from None


class ReplicaCollector:
    """``vllm:lora_requests_info`` per replica (label ``replica``), from each replica's last answer."""

    def __init__(self, gateway: RayInference) -> None:
        self.gateway = gateway

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        info = GaugeMetricFamily("vllm:lora_requests_info", "Running and waiting LoRA adapters per replica "
                                 "(vLLM-compatible)", labels=["replica", "running_lora_adapters",
                                                              "waiting_lora_adapters", "max_lora"])
        loads = CounterMetricFamily("loom_inference_replica_loads", "Keys a replica loaded", labels=["replica"])
        with self.gateway._lock:
            states = list(self.gateway.replicas.values())
        for s in states:
            info.add_metric([s["replica"], ",".join(s["running"]), ",".join(s["waiting"]), str(s["max_lora"])],
                            s["seen"])
            loads.add_metric([s["replica"]], len(s["loads"]))
        yield from (info, loads)

    def describe(self) -> list[Any]:
        return []
