"""The ``workers`` table: which worker processes live, in which lane, and when each last heart-beat.

A worker registers when it starts (:meth:`WorkerTable.register`), heart-beats from a thread (also while a job
runs, :meth:`beat`), and marks itself ``stopped`` when it exits cleanly. Its supervisor (``loom serve``) marks it
``dead`` when the process dies (``kill -9``), and any process's sweep does when its heartbeat went stale (a
worker on another host); the dead worker's running jobs go back to the queue (:meth:`JobQueue.requeue_worker`,
the attempt limit holds). ``/healthz`` and ``/metrics`` read :meth:`summary`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from hub.db.jobs import WorkerRecord
from hub.jobs.queue import JobQueue

#: a running worker whose heartbeat is older than this is down
STALE_AFTER = timedelta(seconds=30)


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class WorkerView:
    name: str
    lane: str
    host: str
    pid: int
    status: str
    started_at: datetime
    heartbeat_at: datetime

    def up(self, now: datetime | None = None) -> bool:
        """Running and heart-beating."""
        return self.status == "running" and (now or _now()) - self.heartbeat_at <= STALE_AFTER


class WorkerTable:
    """Register, heartbeat and retire worker processes; re-queue the jobs of dead ones."""

    def __init__(self, sessions: sessionmaker[Session], queue: JobQueue) -> None:
        self.sessions, self.queue = sessions, queue

    def register(self, name: str, lane: str, host: str, pid: int) -> None:
        with self.sessions.begin() as s:
            row = s.get(WorkerRecord, name)
            if row is None:
                s.add(WorkerRecord(name=name, lane=lane, host=host, pid=pid, status="running", started_at=_now(),
                                   heartbeat_at=_now()))
            else:  # a pid reused on the same host: a new life of the same name
                row.lane, row.status, row.started_at, row.heartbeat_at, row.stopped_at = (
                    lane, "running", _now(), _now(), None)

    def beat(self, name: str, job_id: str | None = None) -> None:
        """Heartbeat the worker (and the job it runs)."""
        with self.sessions.begin() as s:
            row = s.get(WorkerRecord, name)
            if row is not None and row.status == "running":
                row.heartbeat_at = _now()
        if job_id is not None:
            self.queue.touch(job_id)

    def stopped(self, name: str) -> None:
        """The worker exits cleanly."""
        self._retire(name, "stopped")

    def died(self, name: str) -> int:
        """The worker is gone without stopping: mark it dead and re-queue its running jobs (returns how many)."""
        self._retire(name, "dead")
        return self.queue.requeue_worker(name)

    def _retire(self, name: str, status: str) -> None:
        with self.sessions.begin() as s:
            row = s.get(WorkerRecord, name)
            if row is not None and row.status == "running":
                row.status, row.stopped_at = status, _now()

    def sweep(self) -> int:
        """Declare dead the running workers whose heartbeat went stale; returns how many jobs went back."""
        cutoff = _now() - STALE_AFTER
        with self.sessions() as s:
            stale = list(s.scalars(select(WorkerRecord.name).where(WorkerRecord.status == "running",
                                                                   WorkerRecord.heartbeat_at < cutoff)))
        return sum(self.died(name) for name in stale)

    def list(self, *, include_retired: bool = False) -> list[WorkerView]:
        with self.sessions() as s:
            q = select(WorkerRecord).order_by(WorkerRecord.started_at)
            if not include_retired:
                q = q.where(WorkerRecord.status == "running")
            return [WorkerView(r.name, r.lane, r.host, r.pid, r.status, r.started_at, r.heartbeat_at)
                    for r in s.scalars(q)]

    def get(self, name: str) -> WorkerView | None:
        return next((w for w in self.list(include_retired=True) if w.name == name), None)
