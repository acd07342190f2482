"""PROTOTYPE, not wired into the services: Loom's inference engine behind a Ray Serve deployment with
adapter affinity (issue 22, the Ray step builds on what this showed; run by ``benchmarks/ray_probe.py``).

The API process stays the gateway (auth, resolution of ``model``); it computes an affinity key per request
(:func:`affinity_key`: the adapter's content hash, a router version's content hash, or the hash of an
explicit mixture's pinned recipe) and calls the deployment through a handle with
``.options(multiplexed_model_id=key)``. Serve routes the request to a replica that already holds the key
(else to the one with the fewest), and each replica's ``@serve.multiplexed`` loader warms the key in the
replica's own :class:`~hub.services.inference.InferenceService` (adapters from the node's blob cache, i.e.
from S3 once per node), with an LRU of ``models_per_replica`` keys. Requests then go through the engine's
own batcher, so mixed-adapter batching stays inside a replica.

Known gaps (for the real step): replicas resolve with ``viewer=None`` (public adapters only; the gateway must
pass a trusted viewer id); Serve's LRU and the engine's GPU tier evict independently (set both to the same
size); ``auto`` has no key before routing (it goes to any replica).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from hub.core.refs import AdapterRef
from hub.services.inference.resolve import split_model

if TYPE_CHECKING:  # pragma: no cover
    from hub.services.container import Hub
    from hub.settings import Settings

#: settings a replica must not receive through Ray's object store (secrets are read from its own environment).
_SECRET_FIELDS = {"hf_token", "hf_webhook_secret", "token"}


def affinity_key(hub: Hub, model: str, merged: dict[str, Any] | None = None) -> str:
    """The multiplexed model id of a request: what a replica has to load to serve it.

    ``ns/name[@v]`` (adapter or router): the version's content hash; ``merged_adapters``: sha256 of the base and
    the sorted (pinned ref, content hash, weight) triples; a bare base or ``auto``: ``base:<id>``.
    """
    base, rest = split_model(model)
    if merged:
        parts = []
        for ref, w in zip(merged["ids"], merged["weights"], strict=True):
            r = AdapterRef.parse(ref)
            ver = hub.adapters.version(None, r.namespace, r.name, r.version)
            parts.append([f"{r.full_name}@{ver.number}", ver.sha256, float(w)])
        recipe = json.dumps({"base": base or rest, "mixture": sorted(parts)}, sort_keys=True)
        return "mix:" + hashlib.sha256(recipe.encode()).hexdigest()
    ref = AdapterRef.try_parse(rest) if rest else None
    if ref is None:
        return f"base:{base or rest}"
    return hub.adapters.version(None, ref.namespace, ref.name, ref.version).sha256


def replica_settings(settings: Settings) -> dict[str, Any]:
    """What a replica builds its own Hub from (no secrets: those come from the replica's environment)."""
    return settings.model_dump(mode="json", exclude=_SECRET_FIELDS)


def build_app(settings: Settings, *, replicas: int = 2, models_per_replica: int = 16, num_gpus: float = 0.0) -> Any:
    """A Serve application of ``replicas`` Loom engines (``serve.run(app)`` returns its handle)."""
    from ray import serve

    @serve.deployment(num_replicas=replicas, ray_actor_options={"num_cpus": 0.5, "num_gpus": num_gpus})
    class LoomReplica:
        def __init__(self, settings_dict: dict[str, Any]) -> None:
            from hub.services.container import Hub, inference_service
            from hub.settings import get_settings

            self.hub = Hub(get_settings(**settings_dict), migrate=False)
            self.service = inference_service(self.hub, "cpu" if not num_gpus else None)
            self.pid = os.getpid()
            self.loads: list[str] = []
            self._pending: dict[str, dict[str, Any]] = {}

        @serve.multiplexed(max_num_models_per_replica=models_per_replica)
        async def get_model(self, key: str) -> str:
            spec = self._pending[key]
            await asyncio.to_thread(self._warm, spec)
            self.loads.append(key)
            return key

        def _warm(self, spec: dict[str, Any]) -> None:
            from hub.services.inference.resolve import MergedAdapters

            merged = MergedAdapters.parse(spec["merged"]) if spec.get("merged") else None
            self.service.resolve(None, spec["model"], merged)  # loads the adapters into the engine's tiers

        def _request(self, spec: dict[str, Any]) -> Any:
            from hub.services.inference import CompletionRequest
            from hub.services.inference.resolve import MergedAdapters

            merged = MergedAdapters.parse(spec["merged"]) if spec.get("merged") else None
            return CompletionRequest(model=spec["model"], prompts=spec["prompts"], max_tokens=spec.get("max_tokens"),
                                     temperature=spec.get("temperature", 0.0), merged=merged)

        async def complete(self, spec: dict[str, Any]) -> dict[str, Any]:
            key = serve.get_multiplexed_model_id()
            self._pending[key] = spec
            await self.get_model(key)
            res = await asyncio.to_thread(self.service.complete, None, self._request(spec))
            return {"replica": self.pid, "texts": [c.text for c in res.choices]}

        async def stream(self, spec: dict[str, Any]) -> AsyncIterator[str]:
            key = serve.get_multiplexed_model_id()
            self._pending[key] = spec
            await self.get_model(key)
            events = await asyncio.to_thread(self.service.stream, None, self._request(spec))
            done = object()
            while (ev := await asyncio.to_thread(next, events, done)) is not done:
                if isinstance(ev, tuple):
                    yield ev[1]

        def stats(self) -> dict[str, Any]:
            cache = getattr(self.hub.blobs, "cache", None)
            return {"replica": self.pid, "loads": list(self.loads),
                    "blob_cache": None if cache is None else {"hits": cache.hits, "misses": cache.misses}}

    return LoomReplica.bind(replica_settings(settings))
