"""Loom's inference engine as a Ray Serve deployment with adapter affinity (``LOOM_INFERENCE=ray``; the replica side).

Each replica builds a Hub of its own from the API's settings (:func:`replica_settings`: no secrets, local jobs and
inference) and one :class:`~hub.services.inference.InferenceService`, so Loom's mixed-adapter batching, routers and
mixtures run inside a replica unchanged. The gateway (:mod:`hub.services.inference.ray_gateway`) sends each request
with ``multiplexed_model_id`` = its affinity key (:func:`affinity_key`: the adapter's content hash, a router
version's content hash, or the hash of an explicit mixture's pinned recipe). Serve routes it to a replica that
already holds the key (else one with the fewest), and the replica's ``@serve.multiplexed`` loader warms the key in
the engine (adapters from the node's blob cache, i.e. from S3 once per node) with an LRU of
``LOOM_ADAPTER_CACHE_GPU`` keys per replica: the same size as the engine's device tier, so both evict alike.

The gateway has checked that the viewer may use the model; a replica resolves with that viewer (its id travels in
the request), so private adapters work. Every answer carries the replica's :func:`state` (its id, the adapters
loaded in its slot banks, the ones waiting), which the gateway exports as ``vllm:lora_requests_info`` per replica.

A client that leaves cancels its request on the replica twice over: the gateway cancels the Serve call (``ray.cancel``:
a ``CancelledError`` in the replica's method) and calls the replica's ``cancel`` with the request's id (each spec
carries one). The second is not redundant: Serve's cancel of a streaming call is lost now and then (traced in
``test_a_dropped_stream_frees_its_rows_on_the_replica``, about 1 run in 4: the gateway cancelled 40-250 ms into the
stream, and the replica's generator never saw it and ran on to its ``max_tokens``, 11-14 s).
"""

from __future__ import annotations

import asyncio
import os
import threading
import uuid
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

from hub.services.ray_cluster import task_settings

if TYPE_CHECKING:  # pragma: no cover
    from hub.settings import Settings

#: builds a replica's ``(hub, inference service)`` from its settings dict and device
ReplicaFactory = Callable[[dict[str, Any], str | None], tuple[Any, Any]]

#: the Serve application and deployment names
APP_NAME = "loom-inference"
DEPLOYMENT = "LoomReplica"


def replica_settings(settings: Settings, *, own_data_dir: bool = False) -> dict[str, Any]:
    """What a replica builds its Hub from. ``own_data_dir``: each replica keeps its blob cache (and models) under
    ``<data_dir>/replica-<id>``, as on separate nodes (the database URL is then pinned to the API's)."""
    d = task_settings(settings)
    d["database_url"] = settings.resolved_database_url
    d["_own_data_dir"] = own_data_dir
    return d


def request_spec(req: Any, viewer_id: int | None) -> dict[str, Any]:
    """A :class:`~hub.services.inference.CompletionRequest` as plain data for a replica (with the viewer's id and a
    new request id, what the replica's ``cancel`` takes)."""
    return {"request_id": uuid.uuid4().hex, "model": req.model, "prompts": list(req.prompts), "route_texts": req.route_texts,
            "max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "n": req.n,
            "stop": list(req.stop or []), "seed": req.seed, "chat": req.chat, "viewer_id": viewer_id,
            "merged": req.merged, "ignore_eos": req.ignore_eos}  # a frozen MergedAdapters (pickled by Ray)


def build_app(settings: Settings, build_replica: ReplicaFactory, *, replicas: int | None = None,
              models_per_replica: int | None = None, num_gpus: float | None = None, own_data_dir: bool = False) -> Any:
    """The Serve application of Loom's engine (``serve.run(app)`` returns its handle); sizes default to settings.

    Args:
        build_replica: builds a replica's ``(hub, inference service)`` from its settings and device (the
            composition root's :func:`~hub.services.container.build_replica`).
    """
    from ray import serve

    replicas = replicas or settings.inference_replicas
    per_replica = models_per_replica or settings.adapter_cache_gpu
    gpus = settings.inference_replica_gpus if num_gpus is None else num_gpus

    from ray.serve.config import RequestRouterConfig

    from hub.services.inference.ray_router import LoomRequestRouter

    @serve.deployment(name=DEPLOYMENT, num_replicas=replicas, max_ongoing_requests=64,
                      ray_actor_options={"num_cpus": 0.5 if not gpus else 1, "num_gpus": gpus},
                      health_check_period_s=2, health_check_timeout_s=10,
                      request_router_config=RequestRouterConfig(request_router_class=LoomRequestRouter))
    class LoomReplica:
        def __init__(self, settings_dict: dict[str, Any]) -> None:
            # import before concurrent requests: transformers' lazy imports raced across a fresh replica's threads
            # (ImportError: cannot import name 'AutoConfig'), seen in benchmarks/cluster_bench.py
            from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # noqa: F401

            d = dict(settings_dict)
            self.tag = serve.get_replica_context().replica_tag
            if d.pop("_own_data_dir", False):
                d["data_dir"] = os.path.join(str(d["data_dir"]), f"replica-{self.tag}")
            self.hub, self.service = build_replica(d, None if gpus else "cpu")
            if self.hub.settings.inference_default_base:  # ready means the default base is loaded
                self.service.engine(self.hub.settings.inference_default_base)
            self.pid = os.getpid()
            self.loads: list[str] = []
            self._specs: dict[str, dict[str, Any]] = {}
            self._running: dict[str, threading.Event] = {}  # request id -> cancel event, while it runs here

        @serve.multiplexed(max_num_models_per_replica=per_replica)
        async def get_model(self, key: str) -> str:
            spec = self._specs[key]
            await asyncio.to_thread(self._warm, spec)
            self.loads.append(key)
            return key

        def _viewer(self, spec: dict[str, Any]) -> Any:
            return None if spec.get("viewer_id") is None else self.hub.users.get(spec["viewer_id"])

        def _warm(self, spec: dict[str, Any]) -> None:
            from hub.services.inference.resolve import AUTO, split_model

            merged = spec.get("merged")
            if merged is None and split_model(spec["model"])[1] == AUTO:
                self.service.engine(self.service.base_for(spec["model"]))
                return
            self.service.resolve(self._viewer(spec), spec["model"], merged)  # loads the adapters into the tiers

        def _request(self, spec: dict[str, Any]) -> Any:
            from hub.services.inference import CompletionRequest

            merged = spec.get("merged")
            return CompletionRequest(model=spec["model"], prompts=spec["prompts"], route_texts=spec.get("route_texts"),
                                     max_tokens=spec.get("max_tokens"), temperature=spec.get("temperature", 0.0),
                                     top_p=spec.get("top_p", 1.0), n=spec.get("n", 1), stop=spec.get("stop") or [],
                                     seed=spec.get("seed"), merged=merged, chat=bool(spec.get("chat")),
                                     ignore_eos=bool(spec.get("ignore_eos")))

        async def _load(self) -> None:
            key = serve.get_multiplexed_model_id()
            if key:
                await self.get_model(key)

        def _track(self, spec: dict[str, Any]) -> threading.Event:
            """The cancel event of a request starting here: set when the gateway cancels the call or calls
            :meth:`cancel` with its id (the rows leave at the engine's next step)."""
            cancel = self._running[spec["request_id"]] = threading.Event()
            return cancel

        async def cancel(self, request_id: str, key: str | None = None,
                         tried: tuple[str, ...] = ()) -> tuple[bool, str]:
            """Cancel the request ``request_id``: whether it ran here, and this replica's id (the gateway asks the
            next replica when it did not). ``key`` and ``tried`` are for the router
            (:class:`~hub.services.inference.ray_router.LoomRequestRouter`)."""
            event = self._running.get(request_id)
            if event is not None:
                event.set()
            return event is not None, self.tag

        async def complete(self, spec: dict[str, Any]) -> tuple[dict[str, Any], Any]:
            self._specs[serve.get_multiplexed_model_id()] = spec
            await self._load()
            cancel = self._track(spec)
            try:
                res = await self.service.acomplete(self._viewer(spec), self._request(spec), cancel)
            except asyncio.CancelledError:
                cancel.set()
                raise
            finally:
                del self._running[spec["request_id"]]
            return self.state(), res

        async def stream(self, spec: dict[str, Any]) -> AsyncIterator[Any]:
            self._specs[serve.get_multiplexed_model_id()] = spec
            await self._load()
            cancel = self._track(spec)
            try:
                events = await self.service.astream(self._viewer(spec), self._request(spec), cancel)
                async for ev in events:
                    yield ev if isinstance(ev, tuple) else ("result", ev, self.state())
            except (asyncio.CancelledError, GeneratorExit):
                cancel.set()
                raise
            finally:
                del self._running[spec["request_id"]]

        def state(self) -> dict[str, Any]:
            """This replica: id, pid, adapters loaded in its slot banks and waiting, its rows (running, waiting,
            cancelled so far), loads so far, blob cache."""
            running: set[str] = set()
            waiting: set[str] = set()
            rows = {"running": 0, "waiting": 0, "cancelled": 0}
            for _, gpu, batcher in self.service.engines.loaded().values():
                running |= set(gpu.resident())
                waiting |= set(batcher.waiting())
                rows["running"] += batcher.num_running
                rows["waiting"] += batcher.num_waiting
                rows["cancelled"] += getattr(batcher, "rows_cancelled", 0)
            cache = getattr(self.hub.blobs, "cache", None)
            return {"replica": self.tag, "pid": self.pid, "running": sorted(running),
                    "waiting": sorted(waiting - running), "rows": rows, "max_lora": per_replica, "loads": list(self.loads),
                    "adapter_cache": {"hits": self.service.cpu.hits, "misses": self.service.cpu.misses},
                    "blob_cache": None if cache is None else {"hits": cache.hits, "misses": cache.misses}}

    return LoomReplica.bind(replica_settings(settings, own_data_dir=own_data_dir))
