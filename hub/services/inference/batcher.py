"""The batch scheduler of one served base model: concurrent requests share one forward pass.

Requests are queued; a background thread takes the first, waits up to ``window_s`` for more (at most
``max_batch``), groups them by sampling settings, makes sure their adapters are resident
(:class:`~hub.services.inference.cache.GpuTier`) and runs ONE
:meth:`routing.batching.MixedAdapterModel.generate` per group, where each row carries its own adapter,
mixture, or the base (the BGMV-style gathered LoRA of the routing engine). Each row is cut to its own
``max_new_tokens``. The thread is the only user of the model, so adapter slots never move mid-forward.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from hub.core.adapter import LoraAdapter
from hub.core.errors import InvalidInputError

log = logging.getLogger("loom.inference")


@dataclass
class Job:
    """One request row.

    Attributes:
        prompt_ids: the tokenised prompt.
        mixture: adapter key -> weight ({} = the base model).
        adapters: adapter key -> LoraAdapter for every key of ``mixture``.
        max_new_tokens: this row's completion limit.
        temperature / top_p: sampling settings (temperature 0 = greedy).
        seed: optional sampling seed (the batch is seeded with its first row's seed).
        tokens: when set, each new token of this row is put there as it is generated, then None.
        stop: stop strings (the continuous scheduler ends the row when one appears in its text).
        ignore_eos: the row does not end at the eos token (which it keeps): it runs ``max_new_tokens`` tokens
            unless a stop string ends it (vLLM's ``ignore_eos``, for benchmarks that need fixed lengths).
        cancelled: set when the client went away; the row leaves at the next step.
        submitted: when the request was queued (``time.monotonic()``), for the latency metrics.
        routing: a routed row's per-request routing inputs (the continuous scheduler's row state; see
            :meth:`routing.routed_batch.RoutedRows.inputs`).
    """

    prompt_ids: list[int]
    mixture: dict[str, float]
    adapters: dict[str, LoraAdapter]
    max_new_tokens: int
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    tokens: queue.Queue[int | None] | None = None
    future: Future = field(default_factory=Future)
    stop: list[str] = field(default_factory=list)
    ignore_eos: bool = False
    cancelled: threading.Event | None = None
    submitted: float = field(default_factory=time.monotonic)
    first_token_at: float | None = None
    routing: dict[str, Any] = field(default_factory=dict)

    @property
    def group(self) -> tuple[bool, float, float, bool]:
        """What rows of one window generate call share: greedy, temperature, top_p, ignore_eos."""
        greedy = self.temperature == 0.0
        return (greedy, 0.0 if greedy else self.temperature, 1.0 if greedy else self.top_p, self.ignore_eos)


@dataclass
class RowResult:
    """What one row got: new token ids, the finish reason, and the adapters applied."""

    tokens: list[int]
    finish_reason: str
    adapters: dict[str, float]
    batch_size: int
    gate_weights: dict[str, list[float]] | None = None


class Batcher:
    """A background scheduler over one :class:`~hub.services.inference.models.LoadedBase`.

    Args:
        base: the served model. gpu: its device tier. max_batch: most rows per forward.
        window_s: how long to wait for more requests after the first one.
    """

    def __init__(self, base: Any, gpu: Any, max_batch: int, window_s: float) -> None:
        if max_batch < 1:
            raise InvalidInputError(f"inference_max_batch must be >= 1, got {max_batch}")
        if window_s < 0:
            raise InvalidInputError(f"inference_batch_window_ms must be >= 0, got {window_s * 1000}")
        self.base, self.gpu = base, gpu
        self.max_batch, self.window_s = max_batch, window_s
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._stop = threading.Event()
        self.generate_calls = 0
        self.forwards = 0  # model forwards the generate calls ran (a prefill and a decode step per further token)
        self.rows_served = 0
        self.batch_sizes: list[int] = []
        self.running: frozenset[str] = frozenset()  # adapter keys of the batch being generated
        self._running_rows = 0
        # input tokens the forwards processed (padding and finished rows included) and those a row needed
        # (its prompt, then each token it generated but the last): the batcher's wasted work is the difference
        self.tokens_computed = 0
        self.tokens_useful = 0
        self.observer: Any = None  # the serving metrics (set by the engines)
        self._thread = threading.Thread(target=self._loop, daemon=True, name=f"loom-batcher-{base.model_id}")
        self._thread.start()

    def submit(self, job: Job) -> Future:
        """Queue ``job``; its future resolves to a :class:`RowResult` (or the error of its batch)."""
        if self._stop.is_set():
            raise InvalidInputError("the inference service is shutting down")
        self._queue.put(job)
        return job.future

    def submit_all(self, jobs: list[Job]) -> list[Future]:
        """Queue every job of one request (this batcher has no queue bound)."""
        return [self.submit(j) for j in jobs]

    def precheck(self, rows: int) -> None:
        """Nothing to refuse early: this batcher has no queue bound (see ``Scheduler.precheck``)."""

    @property
    def num_waiting(self) -> int:
        return self._queue.qsize()

    @property
    def num_running(self) -> int:
        return self._running_rows

    def waiting(self) -> set[str]:
        """Adapter keys of the queued (not yet running) requests."""
        with self._queue.mutex:
            jobs = [j for j in self._queue.queue if j is not None]
        return {k for j in jobs for k in j.mixture}

    def close(self) -> None:
        """Stop the thread after the queued work."""
        self._stop.set()
        self._queue.put(None)
        self._thread.join(timeout=30)

    def _collect(self, first: Job) -> list[Job]:
        jobs = [first]
        deadline = time.monotonic() + self.window_s
        while len(jobs) < self.max_batch:
            left = deadline - time.monotonic()
            try:
                job = self._queue.get(timeout=max(left, 0.0)) if left > 0 else self._queue.get_nowait()
            except queue.Empty:
                break
            if job is None:
                self._queue.put(None)
                break
            jobs.append(job)
        return jobs

    def _loop(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = self._collect(first)
            groups: dict[tuple[bool, float, float, bool], list[Job]] = {}
            for j in jobs:
                groups.setdefault(j.group, []).append(j)
            for group in groups.values():
                self.running = frozenset(k for j in group for k in j.mixture)
                self._running_rows = len(group)
                try:
                    results = self.run(group)
                except Exception as e:  # noqa: BLE001 - the error goes to every waiting request
                    log.debug("batch failed: %s", e)
                    for j in group:
                        if not j.future.done():
                            j.future.set_exception(e)
                        if j.tokens is not None:
                            j.tokens.put(None)
                    continue
                finally:
                    self.running, self._running_rows = frozenset(), 0
                for j, r in zip(group, results, strict=True):
                    if self.observer is not None:
                        e2e = time.monotonic() - j.submitted
                        self.observer.finished(self.base.model_id, j.mixture, e2e, e2e, len(r.tokens))
                    j.future.set_result(r)

    def run(self, jobs: list[Job]) -> list[RowResult]:
        """Serve ``jobs`` (same sampling settings) with one batched generate call."""
        import torch

        base = self.base
        needed: dict[str, LoraAdapter] = {}
        for j in jobs:
            needed.update(j.adapters)
        self.gpu.ensure(needed)
        width = max(len(j.prompt_ids) for j in jobs)
        ids = torch.full((len(jobs), width), base.pad_id, dtype=torch.long)
        mask = torch.zeros((len(jobs), width), dtype=torch.long)
        for r, j in enumerate(jobs):  # left padding
            ids[r, width - len(j.prompt_ids):] = torch.tensor(j.prompt_ids, dtype=torch.long)
            mask[r, width - len(j.prompt_ids):] = 1
        greedy, temperature, top_p, ignore_eos = jobs[0].group
        eos = None if ignore_eos else base.eos_id
        kwargs: dict[str, Any] = {} if greedy else {"temperature": temperature, "top_p": top_p}
        if not greedy and jobs[0].seed is not None:
            torch.manual_seed(jobs[0].seed)
        new = max(j.max_new_tokens for j in jobs)
        if any(j.tokens is not None for j in jobs):
            kwargs["streamer"] = RowStreamer(jobs, eos)
        res = base.mixed.generate(ids.to(base.device), attention_mask=mask.to(base.device),
                                  adapters=[j.mixture or None for j in jobs], max_new_tokens=new,
                                  greedy=greedy, eos_token_id=base.eos_id, ignore_eos=ignore_eos, **kwargs)
        if "streamer" in kwargs:
            kwargs["streamer"].end()
        self.generate_calls += 1
        self.rows_served += len(jobs)
        steps = max(len(t) for t in res.tokens)  # generate runs every row until the last one ends
        self.forwards += max(1, steps)
        self.tokens_computed += len(jobs) * (width + max(0, steps - 1))
        self.tokens_useful += sum(len(j.prompt_ids) + max(0, len(t[: j.max_new_tokens]) - 1)
                                  for j, t in zip(jobs, res.tokens, strict=True))
        self.batch_sizes.append(len(jobs))
        out = []
        for j, toks, mix in zip(jobs, res.tokens, res.adapters, strict=True):
            toks = toks[: j.max_new_tokens]
            if toks and eos is not None and toks[-1] == eos:
                out.append(RowResult(toks[:-1], "stop", dict(mix), len(jobs)))
            else:
                out.append(RowResult(toks, "length" if len(toks) >= j.max_new_tokens else "stop", dict(mix),
                                     len(jobs)))
        return out


class RowStreamer:
    """A transformers streamer that hands each row's new tokens to that row's queue, then None."""

    def __init__(self, jobs: list[Job], eos: int | None) -> None:
        self.jobs, self.eos = jobs, eos
        self.prompt_seen = False
        self.counts = [0] * len(jobs)
        self.done = [j.tokens is None for j in jobs]

    def put(self, value: Any) -> None:
        if not self.prompt_seen:  # generate() first puts the prompt
            self.prompt_seen = True
            return
        for r, t in enumerate(value.reshape(len(self.jobs), -1)[:, -1].tolist()):
            if self.done[r]:
                continue
            job = self.jobs[r]
            self.counts[r] += 1
            if t != self.eos:
                job.tokens.put(int(t))  # type: ignore[union-attr]
            if t == self.eos or self.counts[r] >= job.max_new_tokens:
                self.done[r] = True
                job.tokens.put(None)  # type: ignore[union-attr]

    def end(self) -> None:
        for r, job in enumerate(self.jobs):
            if not self.done[r]:
                self.done[r] = True
                job.tokens.put(None)  # type: ignore[union-attr]
