"""The continuous scheduler of one served base: a loop thread that owns the model and steps the batch.

Each iteration (:meth:`Scheduler._iterate`): rows whose client left are dropped, waiting rows join while
fewer than ``max_running`` run (their prompts prefilled together, their adapters made resident in the
slot bank first), then ONE decode forward advances every running row
(:class:`routing.continuous.ContinuousBatch`). A finished row resolves its future at once; a streamed row
gets each token as it is sampled. Admission (:mod:`~hub.services.inference.admission`) bounds the queue:
a request whose rows do not fit (in rows, or in the estimated wait for a first token at the costs the loop
measures, :attr:`Scheduler.pace`) answers 429 before anything is queued. The thread is the only user of the
model, so adapter slots never move mid-forward.

The same loop serves the rows of one router artifact on its routed copy of the base
(:class:`~hub.services.inference.routers.RouterRunner`): ``rows`` is then a
:class:`routing.routed_batch.RoutedRows`, a job's ``routing`` inputs (request features, the semantic
preset's decision) become its row's state, and there is no adapter tier (``gpu`` None).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from concurrent.futures import Future
from typing import Any

from hub.core.errors import InvalidInputError, RequestCancelledError
from hub.services.inference.admission import Admission, Pace, slot_wait
from hub.services.inference.batcher import Job, RowResult
from hub.services.inference.messages import IncrementalText

log = logging.getLogger("loom.inference")


class Scheduler:
    """Iteration-level batching over one :class:`~hub.services.inference.models.LoadedBase`.

    Args:
        base: the served model. gpu: its device tier of adapters (None: rows need none). max_running: most
        rows in the batch. max_queued: most rows waiting for a slot (beyond it, 429).
        rows: what runs the rows (a :class:`routing.continuous.RowModel`; default the base's mixed-adapter model).
        name: the loop thread's name (default from the base). max_wait: the longest estimated wait for a first
        token, in seconds (beyond it, 429; 0: no bound).
    """

    def __init__(self, base: Any, gpu: Any, max_running: int, max_queued: int, rows: Any = None,
                 name: str | None = None, max_wait: float = 0.0) -> None:
        from routing.continuous import ContinuousBatch

        if max_running < 1:
            raise InvalidInputError(f"inference_max_batch must be >= 1, got {max_running}")
        self.base, self.gpu, self.max_running = base, gpu, max_running
        self.admission = Admission(max_queued, max_wait)
        self.pace = Pace()  # measured seconds per decode step and per prefilled prompt token
        self._joining: list[Job] = []  # taken from the queue, not yet running
        self.batch = ContinuousBatch(base.mixed if rows is None else rows, base.pad_id)
        self._waiting: deque[Job] = deque()
        self._jobs: dict[int, tuple[Job, Any]] = {}  # id(row) -> (job, row) of the running rows
        self._cv = threading.Condition()
        self._stop = False
        self.rows_served = 0
        self.rows_cancelled = 0
        self.batch_sizes: list[int] = []
        self.running: frozenset[str] = frozenset()
        self.observer: Any = None  # the serving metrics (set by the engines)
        self._thread = threading.Thread(target=self._loop, daemon=True, name=name or f"loom-scheduler-{base.model_id}")
        self._thread.start()

    # -- the queue ------------------------------------------------------------------------------
    @property
    def generate_calls(self) -> int:
        """Forwards run (each is a call of the model here; the window batcher counts its ``generate`` calls)."""
        return self.forwards

    @property
    def forwards(self) -> int:
        """Model forwards run (prefills and decode steps)."""
        return self.batch.forwards

    @property
    def tokens_computed(self) -> int:
        """Input tokens the forwards processed (padding and holes included)."""
        return self.batch.tokens_computed

    @property
    def tokens_useful(self) -> int:
        """Input tokens the rows needed: prompts, then each generated token but the last."""
        return self.batch.tokens_useful

    @property
    def num_running(self) -> int:
        return len(self._jobs)

    @property
    def num_waiting(self) -> int:
        return len(self._waiting)

    def submit(self, job: Job) -> Future:
        """Queue one row; its future resolves to a :class:`RowResult`."""
        return self.submit_all([job])[0]

    def submit_all(self, jobs: list[Job]) -> list[Future]:
        """Queue every row of one request, or none of them.

        Raises:
            TooManyRequestsError: the rows do not fit the queue bound (429 with ``Retry-After``).
        """
        with self._cv:
            self._admit([j.max_new_tokens for j in jobs], sum(len(j.prompt_ids) for j in jobs))
            self._waiting.extend(jobs)
            self._cv.notify()
        return [j.future for j in jobs]

    def precheck(self, rows: int) -> None:
        """Refuse now a request of ``rows`` rows that :meth:`submit_all` would refuse whatever its prompts and
        ``max_tokens``: it is checked as the least work a row can be (a 1-token prompt, 1 token to generate), and
        both bounds only grow with a row's work. A server at its bound thus turns a request away before it is
        resolved through the registry and tokenized (most of what a refusal cost).

        Raises:
            TooManyRequestsError: as :meth:`submit_all` would.
        """
        with self._cv:
            self._admit([1] * rows, rows)

    def _admit(self, new: list[int], prompt_tokens: int) -> None:
        """The admission check of rows with ``max_tokens`` ``new`` and ``prompt_tokens`` prompt tokens in all
        (the lock held)."""
        if self._stop:
            raise InvalidInputError("the inference service is shutting down")
        batch = list(self._jobs.values())  # one C-level copy: the loop thread adds rows without the lock
        running = {id(j) for j, _ in batch}
        joining = [j for j in self._joining if id(j) not in running]  # taken from the queue, not yet in the batch
        free = max(0, self.max_running - len(batch) - len(joining))
        self.admission.check(len(new), len(self._waiting), free)
        if self.admission.max_wait > 0 and (batch or joining or self._waiting):  # idle: nobody to wait for
            left = [j.max_new_tokens - len(row.tokens) for j, row in batch]
            left += [j.max_new_tokens for j in joining]
            steps = slot_wait(left, free, [j.max_new_tokens for j in self._waiting], new)
            ahead = sum(len(j.prompt_ids) for q in (self._joining, self._waiting) for j in q) + prompt_tokens
            self.admission.check_wait(self.pace.wait(steps, ahead))

    def waiting(self) -> set[str]:
        """Adapter keys of the queued (not yet running) rows."""
        with self._cv:
            return {k for j in self._waiting for k in j.mixture}

    def close(self) -> None:
        """Stop the thread after the running and queued rows."""
        with self._cv:
            self._stop = True
            self._cv.notify()
        self._thread.join(timeout=60)

    # -- the loop -------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cv:
                while not self._waiting and not len(self.batch) and not self._stop:
                    self._cv.wait()
                if self._stop and not self._waiting and not len(self.batch):
                    return
                joiners = self._take()
                self._joining = joiners
            try:
                self._iterate(joiners)
            except Exception as e:  # noqa: BLE001 - the error goes to every row of the failed step
                log.exception("inference step failed")
                self.batch.cancel_all("error")
                failed = [job for job, _ in self._jobs.values()] + joiners
                self._jobs.clear()
                self._joining = []
                self.running = frozenset()
                for job in failed:
                    if not job.future.done():
                        job.future.set_exception(e)
                    if job.tokens is not None:
                        job.tokens.put(None)

    def _take(self) -> list[Job]:
        """Waiting rows that join now (cancelled ones are answered and skipped)."""
        out: list[Job] = []
        room = self.max_running - len(self._jobs)
        while self._waiting and len(out) < room:
            job = self._waiting.popleft()
            if job.cancelled is not None and job.cancelled.is_set():
                self._cancelled(job)
                continue
            out.append(job)
        return out

    def _iterate(self, joiners: list[Job]) -> None:
        from routing.continuous import Row
        from routing.sampling import SamplingParams

        for job, row in self._jobs.values():  # a client that left frees its row before the next forward
            if job.cancelled is not None and job.cancelled.is_set():
                row.cancel()
        if joiners:
            needed: dict[str, Any] = {}
            for job, _ in self._jobs.values():
                needed.update(job.adapters)
            for job in joiners:
                needed.update(job.adapters)
            if self.gpu is not None:
                self.gpu.ensure(needed)
            rows = []
            eos = frozenset() if self.base.eos_id is None else frozenset({self.base.eos_id})
            for job in joiners:
                row = Row(job.prompt_ids, dict(job.mixture), job.max_new_tokens,
                          SamplingParams(job.temperature, job.top_p, job.seed), frozenset() if job.ignore_eos else eos,
                          self._on_token(job),
                          state=dict(job.routing))
                self._jobs[id(row)] = (job, row)
                rows.append(row)
            # running before the prefill: it emits each joiner's first token, and a scrape after that token
            # must list the joiner's adapters
            self.running = frozenset(k for job, _ in self._jobs.values() for k in job.mixture)
            began = time.monotonic()
            left = self.batch.add(rows)
            self.pace.prefilled(time.monotonic() - began, sum(len(job.prompt_ids) for job in joiners))
            self._joining = []
            self._finish(left)
        if len(self.batch):
            self.batch_sizes.append(len(self.batch))
            del self.batch_sizes[:-1000]
            began = time.monotonic()
            left = self.batch.step()
            self.pace.stepped(time.monotonic() - began)
            self._finish(left)

    def _on_token(self, job: Job) -> Any:
        dec = IncrementalText(self.base.tokenizer, job.stop) if job.stop else None

        def on_token(tok: int) -> bool:
            if job.first_token_at is None:
                job.first_token_at = time.monotonic()
            if job.tokens is not None:
                job.tokens.put(tok)
            if job.cancelled is not None and job.cancelled.is_set():
                return False
            if dec is not None:
                dec.add(tok)
                return not dec.stopped
            return True

        return on_token

    def _finish(self, rows: list[Any]) -> None:
        size = len(self.batch) + len(rows)
        finished = [(row, self._jobs.pop(id(row))[0]) for row in rows]
        if rows:  # the adapters still running (a scrape lists them)
            self.running = frozenset(k for job, _ in self._jobs.values() for k in job.mixture)
        for row, job in finished:
            if job.tokens is not None:
                job.tokens.put(None)
            if row.finish_reason == "cancelled" or (job.cancelled is not None and job.cancelled.is_set()):
                self._cancelled(job)
                continue
            self.rows_served += 1
            if self.observer is not None:
                now = time.monotonic()
                ttft = (job.first_token_at or now) - job.submitted
                self.observer.finished(self.base.model_id, job.mixture, ttft, now - job.submitted, len(row.tokens),
                                       self.admission.max_wait)
            adapters, gates = self.batch.runner.report(row)
            job.future.set_result(RowResult(list(row.tokens), row.finish_reason, adapters, size, gates))

    def _cancelled(self, job: Job) -> None:
        self.rows_cancelled += 1
        if job.tokens is not None:
            job.tokens.put(None)
        if not job.future.done():
            job.future.set_exception(RequestCancelledError("the client closed the request"))
        if self.observer is not None:
            self.observer.cancelled(self.base.model_id)
