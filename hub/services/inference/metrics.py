"""Prometheus view of the inference service, on the hub's own registry (served at ``/metrics``).

* ``vllm:lora_requests_info`` — vLLM's gauge that off-the-shelf gateway routers read: labels
  ``running_lora_adapters`` and ``waiting_lora_adapters`` (comma-separated adapter keys) and
  ``max_lora``; the value is the scrape time, as in vLLM.
* ``loom_inference_generate_calls`` / ``loom_inference_rows`` — batched forwards and the request
  rows they served (their ratio is the mean batch size), per base.
* ``loom_inference_resident_adapters`` — adapters in each base's slot bank.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any


class InferenceCollector:
    """A custom collector reading the live state of an :class:`InferenceService` at scrape time."""

    def __init__(self, svc: Any) -> None:
        self.svc = svc

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        svc = self.svc
        with svc._lock:
            engines = dict(svc._bases)
        running, waiting = set(), set()
        calls = CounterMetricFamily("loom_inference_generate_calls", "Batched generate calls", labels=["base"])
        rows = CounterMetricFamily("loom_inference_rows", "Request rows served", labels=["base"])
        resident = GaugeMetricFamily("loom_inference_resident_adapters", "Adapters in the slot bank",
                                     labels=["base"])
        for base_id, (_, gpu, batcher) in engines.items():
            running |= set(batcher.running)
            waiting |= batcher.waiting()
            calls.add_metric([base_id], batcher.generate_calls)
            rows.add_metric([base_id], batcher.rows_served)
            resident.add_metric([base_id], len(gpu.resident()))
        info = GaugeMetricFamily("vllm:lora_requests_info", "Running and waiting LoRA adapters (vLLM-compatible)",
                                 labels=["running_lora_adapters", "waiting_lora_adapters", "max_lora"])
        info.add_metric([",".join(sorted(running)), ",".join(sorted(waiting - running)),
                         str(svc.settings.adapter_cache_gpu)], time.time())
        yield from (info, calls, rows, resident)

    def describe(self) -> list[Any]:
        return []


def register(svc: Any) -> InferenceCollector | None:
    """Add the collector to the hub's registry (once per hub); returns it, or None if one is there."""
    registry = svc.hub.metrics.registry
    if getattr(svc.hub, "_inference_collector", None) is not None:
        return None
    col = InferenceCollector(svc)
    registry.register(col)
    svc.hub._inference_collector = col
    return col


def unregister(svc: Any, col: InferenceCollector | None) -> None:
    if col is not None and getattr(svc.hub, "_inference_collector", None) is col:
        svc.hub.metrics.registry.unregister(col)
        svc.hub._inference_collector = None
