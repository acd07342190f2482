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
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry


class InferenceCollector:
    """A custom collector reading the live state of the served bases at scrape time.

    Args:
        engines: the :class:`~hub.services.inference.engines.BaseEngines`. max_lora: the device tier's size.
    """

    def __init__(self, engines: Any, max_lora: int) -> None:
        self.engines, self.max_lora = engines, max_lora

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        running, waiting = set(), set()
        calls = CounterMetricFamily("loom_inference_generate_calls", "Batched generate calls", labels=["base"])
        rows = CounterMetricFamily("loom_inference_rows", "Request rows served", labels=["base"])
        resident = GaugeMetricFamily("loom_inference_resident_adapters", "Adapters in the slot bank",
                                     labels=["base"])
        for base_id, (_, gpu, batcher) in self.engines.loaded().items():
            running |= set(batcher.running)
            waiting |= batcher.waiting()
            calls.add_metric([base_id], batcher.generate_calls)
            rows.add_metric([base_id], batcher.rows_served)
            resident.add_metric([base_id], len(gpu.resident()))
        info = GaugeMetricFamily("vllm:lora_requests_info", "Running and waiting LoRA adapters (vLLM-compatible)",
                                 labels=["running_lora_adapters", "waiting_lora_adapters", "max_lora"])
        info.add_metric([",".join(sorted(running)), ",".join(sorted(waiting - running)), str(self.max_lora)],
                        time.time())
        yield from (info, calls, rows, resident)

    def describe(self) -> list[Any]:
        return []


#: the collector registered on each registry (at most one: two would report the same metric names)
_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, InferenceCollector] = weakref.WeakKeyDictionary()


def register(registry: CollectorRegistry, engines: Any, max_lora: int) -> InferenceCollector | None:
    """Add a collector of ``engines`` to ``registry`` unless one is there; returns it, or None."""
    if registry in _REGISTERED:
        return None
    col = InferenceCollector(engines, max_lora)
    registry.register(col)
    _REGISTERED[registry] = col
    return col


def unregister(registry: CollectorRegistry, col: InferenceCollector | None) -> None:
    """Take ``col`` (what :func:`register` returned) off ``registry``."""
    if col is not None and _REGISTERED.get(registry) is col:
        registry.unregister(col)
        del _REGISTERED[registry]
