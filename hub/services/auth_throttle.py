"""Throttling of failed authentication: a client that sends too many invalid tokens waits.

Failures are counted per client address in a sliding window, in this process's memory (each API process
counts its own; behind a proxy the address is the proxy's unless the server is told to trust its headers).
A client at the limit gets :class:`RateLimitedError` (429 with ``Retry-After``) before its token is even looked
up, until its oldest failure leaves the window. At most :data:`MAX_CLIENTS` addresses are tracked.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable

from hub.core.errors import RateLimitedError

MAX_CLIENTS = 100_000


class AuthThrottle:
    """Count failed authentications per client.

    Args:
        limit: failures allowed within ``window_s`` seconds; 0 turns throttling off.
        window_s: the sliding window. clock: monotonic seconds (tests).
    """

    def __init__(self, limit: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.limit, self.window_s, self.clock = limit, window_s, clock
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str | None) -> None:
        """Raise RateLimitedError if ``client`` is at the limit (None: an unknown client, never throttled)."""
        if not self.limit or client is None:
            return
        now = self.clock()
        with self._lock:
            times = self._prune(client, now)
            if times is not None and len(times) >= self.limit:
                retry = max(1.0, times[0] + self.window_s - now)
                raise RateLimitedError(
                    f"too many failed authentications from this client; retry in {retry:.0f} s",
                    retry_after=round(retry, 1))

    def failed(self, client: str | None) -> None:
        """Record one failed authentication of ``client``."""
        if not self.limit or client is None:
            return
        now = self.clock()
        with self._lock:
            if client not in self._failures and len(self._failures) >= MAX_CLIENTS:
                for key in list(self._failures):  # forget the clients whose failures all left the window
                    self._prune(key, now)
                if len(self._failures) >= MAX_CLIENTS:  # still full: forget the longest-known client
                    self._failures.pop(next(iter(self._failures)))
            self._failures.setdefault(client, deque()).append(now)

    def _prune(self, client: str, now: float) -> deque[float] | None:
        times = self._failures.get(client)
        if times is None:
            return None
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if not times:
            del self._failures[client]
            return None
        return times
