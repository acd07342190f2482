"""Prometheus view of the inference service, on the hub's own registry (served at ``/metrics``).

* ``vllm:lora_requests_info`` — vLLM's gauge that off-the-shelf gateway routers read: labels
  ``running_lora_adapters`` and ``waiting_lora_adapters`` (comma-separated adapter keys) and
  ``max_lora``; the value is the scrape time, as in vLLM.
* ``loom_inference_generate_calls`` / ``loom_inference_rows`` — batched forwards and the request
  rows they served (their ratio is the mean batch size), per base and per router artifact.
* ``loom_inference_forward_tokens`` / ``loom_inference_needed_tokens`` — input tokens the forwards ran and
  those the rows needed (prompts, then each generated token but the last); their ratio is the scheduler's
  waste (left padding, rows computed after they finished, holes).
* ``loom_inference_resident_adapters`` — adapters in each base's slot bank.
* vLLM's serving metrics, same names: ``vllm:num_requests_running`` / ``vllm:num_requests_waiting``
  (rows, per base, label ``model_name``), the histograms ``vllm:time_to_first_token_seconds``,
  ``vllm:time_per_output_token_seconds`` and ``vllm:e2e_request_latency_seconds``, and the counter
  ``vllm:request_success`` (finished rows); plus ``loom_inference_adapter_requests`` (finished rows per
  adapter key, ``base`` for the bare base) and ``loom_inference_cancelled_requests`` (rows whose client left).
  The window scheduler reports no separate first token: its TTFT is the end-to-end latency.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry


class InferenceCollector:
    """A custom collector reading the live state of the served bases at scrape time.

    Args:
        engines: the :class:`~hub.services.inference.engines.BaseEngines`. max_lora: the device tier's size.
        routers: () -> router artifact key -> the scheduler of its rows (their running/waiting rows are
            reported under the router's key).
    """

    def __init__(self, engines: Any, max_lora: int, routers: Callable[[], dict[str, Any]] | None = None) -> None:
        self.engines, self.max_lora, self.routers = engines, max_lora, routers

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        running, waiting = set(), set()
        calls = CounterMetricFamily("loom_inference_generate_calls", "Batched generate calls", labels=["base"])
        rows = CounterMetricFamily("loom_inference_rows", "Request rows served", labels=["base"])
        resident = GaugeMetricFamily("loom_inference_resident_adapters", "Adapters in the slot bank",
                                     labels=["base"])
        num_running = GaugeMetricFamily("vllm:num_requests_running", "Request rows in the running batch",
                                        labels=["model_name"])
        num_waiting = GaugeMetricFamily("vllm:num_requests_waiting", "Request rows waiting for a slot",
                                        labels=["model_name"])
        forward = CounterMetricFamily("loom_inference_forward_tokens", "Input tokens of the forwards run (left "
                                      "padding, rows that finished before their batch and holes included)",
                                      labels=["base"])
        needed = CounterMetricFamily("loom_inference_needed_tokens", "Input tokens the rows needed (their prompts, "
                                     "then each generated token but the last)", labels=["base"])
        scheds: list[tuple[str, Any]] = []
        for base_id, (_, gpu, batcher) in self.engines.loaded().items():
            scheds.append((base_id, batcher))
            running |= set(batcher.running)
            waiting |= batcher.waiting()
            resident.add_metric([base_id], len(gpu.resident()))
        # a router artifact's rows run on a scheduler of their own, labelled with the artifact's key
        scheds += list((self.routers() if self.routers is not None else {}).items())
        for key, sched in scheds:
            num_running.add_metric([key], sched.num_running)
            num_waiting.add_metric([key], sched.num_waiting)
            calls.add_metric([key], sched.generate_calls)
            rows.add_metric([key], sched.rows_served)
            forward.add_metric([key], sched.tokens_computed)
            needed.add_metric([key], sched.tokens_useful)
        info = GaugeMetricFamily("vllm:lora_requests_info", "Running and waiting LoRA adapters (vLLM-compatible)",
                                 labels=["running_lora_adapters", "waiting_lora_adapters", "max_lora"])
        info.add_metric([",".join(sorted(running)), ",".join(sorted(waiting - running)), str(self.max_lora)],
                        time.time())
        yield from (info, calls, rows, forward, needed, resident, num_running, num_waiting)

    def describe(self) -> list[Any]:
        return []


#: latency buckets (seconds) of vLLM's histograms
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
TPOT_BUCKETS = (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0, 20.0,
                40.0, 80.0)
E2E_BUCKETS = (0.3, 0.5, 0.8, 1.0, 1.5, 2.0, 2.5, 5.0, 10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 120.0, 240.0,
               480.0, 960.0)


class ServingMetrics:
    """The latency histograms and request counters the schedulers report finished rows to.

    Args:
        registry: where they are registered (once per registry: :func:`serving_metrics` shares them).
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        from prometheus_client import Counter, Histogram

        self.ttft = Histogram("vllm:time_to_first_token_seconds", "Time to first token", ["model_name"],
                              buckets=TTFT_BUCKETS, registry=registry)
        self.tpot = Histogram("vllm:time_per_output_token_seconds", "Time per output token after the first",
                              ["model_name"], buckets=TPOT_BUCKETS, registry=registry)
        self.e2e = Histogram("vllm:e2e_request_latency_seconds", "End-to-end request latency", ["model_name"],
                             buckets=E2E_BUCKETS, registry=registry)
        self.success = Counter("vllm:request_success", "Finished request rows", ["model_name"], registry=registry)
        self.adapter_requests = Counter("loom_inference_adapter_requests", "Finished request rows per adapter",
                                        ["model_name", "adapter"], registry=registry)
        self.cancelled_requests = Counter("loom_inference_cancelled_requests", "Rows whose client went away",
                                          ["model_name"], registry=registry)
        self.over_wait_bound = Counter(
            "loom_inference_first_token_over_wait_bound", "Admitted rows whose first token came later than "
            "LOOM_INFERENCE_MAX_QUEUE_WAIT (the admission estimate missed)", ["model_name"], registry=registry)

    def finished(self, base_id: str, mixture: dict[str, float], ttft: float, e2e: float, tokens: int,
                 wait_bound: float = 0.0) -> None:
        """Record one finished row: its TTFT, end-to-end latency and ``tokens`` output tokens; with a wait bound
        (seconds, 0: none), whether its first token came later than the bound."""
        self.ttft.labels(base_id).observe(ttft)
        if 0 < wait_bound < ttft:
            self.over_wait_bound.labels(base_id).inc()
        self.e2e.labels(base_id).observe(e2e)
        if tokens > 1:
            self.tpot.labels(base_id).observe((e2e - ttft) / (tokens - 1))
        self.success.labels(base_id).inc()
        for key in mixture or {"base": 1.0}:
            self.adapter_requests.labels(base_id, key).inc()

    def cancelled(self, base_id: str) -> None:
        self.cancelled_requests.labels(base_id).inc()


_SERVING: weakref.WeakKeyDictionary[CollectorRegistry, ServingMetrics] = weakref.WeakKeyDictionary()


def serving_metrics(registry: CollectorRegistry) -> ServingMetrics:
    """The :class:`ServingMetrics` of ``registry`` (made on first use: Prometheus names are unique)."""
    if registry not in _SERVING:
        _SERVING[registry] = ServingMetrics(registry)
    return _SERVING[registry]


#: the collector registered on each registry (at most one: two would report the same metric names)
_REGISTERED: weakref.WeakKeyDictionary[CollectorRegistry, InferenceCollector] = weakref.WeakKeyDictionary()


def register(registry: CollectorRegistry, engines: Any, max_lora: int,
             routers: Callable[[], dict[str, Any]] | None = None) -> InferenceCollector | None:
    """Add a collector of ``engines`` to ``registry``, replacing the one an earlier service put there (the newest
    service of a process is the one serving; two collectors would report the same metric names). Returns it."""
    old = _REGISTERED.pop(registry, None)
    if old is not None:
        registry.unregister(old)
    col = InferenceCollector(engines, max_lora, routers)
    registry.register(col)
    _REGISTERED[registry] = col
    return col


def unregister(registry: CollectorRegistry, col: InferenceCollector | None) -> None:
    """Take ``col`` (what :func:`register` returned) off ``registry``."""
    if col is not None and _REGISTERED.get(registry) is col:
        registry.unregister(col)
        del _REGISTERED[registry]
