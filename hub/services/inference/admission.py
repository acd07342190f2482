"""Admission control of the inference service: bounds checked before any work is queued.

* :class:`Admission` — a scheduler's queue bound: a request whose rows do not fit the free running slots
  plus ``max_queued`` waiting ones answers 429 (:class:`~hub.core.errors.TooManyRequestsError`) with a
  ``Retry-After``; all rows of a request are admitted together or not at all, nothing is dropped silently.
* :class:`UserLimits` — requests in flight per user (or per anonymous client address), 429 beyond the limit.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from hub.core.errors import TooManyRequestsError


class Admission:
    """The queue bound of one scheduler.

    Args:
        max_queued: the most rows waiting for a slot.
    """

    def __init__(self, max_queued: int) -> None:
        self.max_queued = max_queued
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
