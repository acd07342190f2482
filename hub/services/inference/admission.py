"""Admission control of the inference service: bounds checked before any work is queued.

* :class:`Admission` — a scheduler's queue bound: a request whose rows do not fit the free running slots
  plus ``max_queued`` waiting ones answers 429 (:class:`~hub.core.errors.TooManyRequestsError`) with a
  ``Retry-After``; all rows of a request are admitted together or not at all, nothing is dropped silently.
  With ``max_wait`` set, a request is also refused when its estimated wait for a first token exceeds it
  (:meth:`Pace.wait`: the decode steps until its rows get a slot, :func:`slot_wait`, plus the prefill of
  every prompt queued ahead of it and its own, at the scheduler's measured costs): a bound on time to first
  token rather than on rows, which holds whatever the request lengths. ``Retry-After`` is then that estimate.
  A scheduler with nothing running or queued admits whatever the estimate: the bound is on waiting for other
  rows, and costs measured in a bad moment (only admitted rows update them) must not turn an idle server away.
* :class:`UserLimits` — requests in flight per user (or per anonymous client address), 429 beyond the limit.
"""

from __future__ import annotations

import heapq
import math
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from hub.core.errors import TooManyRequestsError


def slot_wait(remaining: Iterable[int], free: int, waiting: Iterable[int], rows: Sequence[int]) -> int:
    """Iterations until the last of ``rows`` new rows takes a slot, if every row runs its ``max_tokens``.

    Args:
        remaining: tokens each running row has left to generate. free: slots open now.
        waiting: ``max_tokens`` of each queued row, in queue order (they take slots first).
        rows: ``max_tokens`` of each new row.

    Slots are handed out in queue order as they free (a row that joins frees its slot ``max_tokens``
    iterations later), which is what the scheduler does; rows that end early (EOS, a stop string) only make
    the true wait shorter, so this is an upper bound.
    """
    frees = [max(0, r) for r in remaining] + [0] * max(0, free)
    heapq.heapify(frees)
    if not frees:
        return 0
    start = 0
    for need in [*waiting, *rows]:
        start = heapq.heappop(frees)
        heapq.heappush(frees, start + max(1, need))
    return start


@dataclass
class Pace:
    """What the scheduler's work costs, measured as it runs (exponential moving averages; None until seen).

    Attributes:
        step_s: seconds of one decode step. prefill_token_s: seconds per prompt token of a prefill (its
            padding and fixed costs spread over the prompts' tokens). weight: of the newest measurement.
    """

    step_s: float | None = None
    prefill_token_s: float | None = None
    weight: float = 0.2

    def stepped(self, seconds: float) -> None:
        self.step_s = self._mix(self.step_s, seconds)

    def prefilled(self, seconds: float, tokens: int) -> None:
        if tokens > 0:
            self.prefill_token_s = self._mix(self.prefill_token_s, seconds / tokens)

    def _mix(self, prev: float | None, new: float) -> float:
        return new if prev is None else prev + self.weight * (new - prev)

    def wait(self, steps: int, prompt_tokens: int) -> float | None:
        """Seconds until a first token: ``steps`` decode steps until a slot (plus the step under way) and
        ``prompt_tokens`` of prefill (the prompts queued ahead and the request's own); None before both costs
        were measured."""
        if self.step_s is None or self.prefill_token_s is None:
            return None
        return (steps + 1) * self.step_s + prompt_tokens * self.prefill_token_s


class Admission:
    """The queue bound of one scheduler.

    Args:
        max_queued: the most rows waiting for a slot. max_wait: the longest estimated wait in seconds before a
            new request's rows start (0: no bound).
    """

    def __init__(self, max_queued: int, max_wait: float = 0.0) -> None:
        self.max_queued = max_queued
        self.max_wait = max_wait
        self.refused = 0

    def check(self, rows: int, waiting: int, free: int) -> None:
        """Refuse ``rows`` new rows when ``waiting`` rows already wait and ``free`` slots are open.

        Raises:
            TooManyRequestsError: they do not fit (``retry_after`` in seconds in its details).
        """
        if waiting + rows > free + self.max_queued:
            self.refused += 1
            raise TooManyRequestsError(
                f"the server is busy: {waiting} request rows are queued (the bound is "
                f"LOOM_INFERENCE_MAX_QUEUED={self.max_queued}); retry later", retry_after=1, queued=waiting,
                limit=self.max_queued)

    def check_wait(self, wait: float | None) -> None:
        """Refuse a request whose estimated wait for a first token is ``wait`` seconds (:meth:`Pace.wait`).

        Nothing is refused before the costs were measured (``wait`` None), nor when ``max_wait`` is 0.

        Raises:
            TooManyRequestsError: the estimate exceeds ``max_wait`` (``retry_after`` is the estimate).
        """
        if self.max_wait <= 0 or wait is None:
            return
        if wait > self.max_wait:
            self.refused += 1
            raise TooManyRequestsError(
                f"the server is busy: a new request would wait about {wait:.2f} s for its first token (the bound is "
                f"LOOM_INFERENCE_MAX_QUEUE_WAIT={self.max_wait:g} s); retry later",
                retry_after=max(1, math.ceil(wait)), expected_wait_s=round(wait, 3), limit_s=self.max_wait)


class UserLimits:
    """Requests in flight per caller key (a user id or ``anon:<address>``).

    Args:
        limit: the most concurrent requests of one key.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._counts: dict[str, int] = {}
        self._lock = threading.Lock()

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        """Count one request of ``key`` while the block runs.

        Raises:
            TooManyRequestsError: ``key`` already has ``limit`` requests in flight.
        """
        with self._lock:
            n = self._counts.get(key, 0)
            if n >= self.limit:
                raise TooManyRequestsError(
                    f"too many concurrent requests from this caller ({n}; the limit is "
                    f"LOOM_INFERENCE_MAX_CONCURRENT_PER_USER={self.limit}); retry later", retry_after=1,
                    limit=self.limit)
            self._counts[key] = n + 1
        try:
            yield
        finally:
            with self._lock:
                left = self._counts[key] - 1
                if left:
                    self._counts[key] = left
                else:
                    del self._counts[key]
