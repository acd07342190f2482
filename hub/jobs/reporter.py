"""How a running job reports progress and log lines, and learns that it was cancelled.

Handlers see only the :class:`Reporter` protocol; the worker passes a :class:`QueueReporter`, which
writes to the job's row (throttled) and raises :class:`JobCancelled` once a cancel was requested.
"""

from __future__ import annotations

import time
from typing import Protocol

from hub.jobs.queue import JobQueue


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled; the worker marks the job cancelled."""


class Reporter(Protocol):
    """``report(progress, message)`` and ``report.log(line)``; both raise :class:`JobCancelled` on cancel."""

    def __call__(self, progress: float | None = None, message: str | None = None, *, force: bool = False) -> None:
        """Record progress in [0, 1] and/or a status message (calls closer than the reporter's interval are
        dropped unless ``force``, or the progress is 0 or 1)."""

    def log(self, line: str) -> None:
        """Append a line to the job's log."""


class QueueReporter:
    """The :class:`Reporter` of a job in a :class:`~hub.jobs.queue.JobQueue`.

    Args:
        queue: the queue holding the job. job_id: the job.
        min_interval: seconds between two progress writes (log lines are always written).
    """

    def __init__(self, queue: JobQueue, job_id: str, min_interval: float = 0.2) -> None:
        self.queue, self.job_id, self.min_interval = queue, job_id, min_interval
        self._last = 0.0

    def __call__(self, progress: float | None = None, message: str | None = None, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < self.min_interval and progress not in (0.0, 1.0):
            return
        self._last = now
        if self.queue.report(self.job_id, progress=progress, message=message):
            raise JobCancelled(self.job_id)

    def log(self, line: str) -> None:
        if self.queue.report(self.job_id, log=line):
            raise JobCancelled(self.job_id)
