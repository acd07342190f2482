"""The job queue over the ``jobs`` table: submit (deduplicated by recipe hash), claim, report, finish.

Every method opens its own short transaction, so the API process and any number of worker
processes share the queue through the database alone.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import AmbiguousError, ConflictError, NotFoundError
from hub.db.jobs import FINISHED, Job
from hub.db.models import User

MAX_LOG_LINES = 500
MAX_ATTEMPTS = 3
#: most candidates an ambiguous prefix lists
MAX_CANDIDATES = 10
#: most jobs a queued job's view lists as running or waiting ahead of it
MAX_AHEAD = 5


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class JobView:
    """A detached snapshot of a job row, safe to use after its session closed."""

    id: str
    kind: str
    status: str
    owner_id: int | None
    owner: str | None
    request: dict[str, Any]
    recipe_hash: str | None
    progress: float
    message: str
    log: list[str]
    result: dict[str, Any] | None
    error: dict[str, Any] | None
    cancel_requested: bool
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    #: a queued job's place in its line (1: next), and what runs or waits ahead of it
    position: int | None = None
    #: the worker running (or that last ran) the job, ``host:pid``
    worker: str | None = None
    ahead: tuple[dict[str, Any], ...] = ()

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def to_dict(self) -> dict[str, Any]:
        d = self.__dict__.copy()
        for k in ("created_at", "started_at", "finished_at"):
            d[k] = d[k].isoformat() if d[k] else None
        d["ahead"] = [dict(a) for a in self.ahead]
        return d


def _view(job: Job, owner: str | None, position: int | None = None,
          ahead: tuple[dict[str, Any], ...] = ()) -> JobView:
    return JobView(
        id=job.id, kind=job.kind, status=job.status, owner_id=job.owner_id, owner=owner, request=dict(job.request or {}),
        recipe_hash=job.recipe_hash, progress=float(job.progress or 0.0), message=job.message or "",
        log=list(job.log or []), result=job.result, error=job.error, cancel_requested=bool(job.cancel_requested),
        attempts=job.attempts or 0, created_at=job.created_at, started_at=job.started_at,
        finished_at=job.finished_at, position=position, worker=job.worker, ahead=ahead,
    )


class JobQueue:
    """Submit, observe and run jobs stored in the database."""

    def __init__(self, sessions: sessionmaker[Session], short_kinds: tuple[str, ...] = ()) -> None:
        """``short_kinds``: the kinds a short lane of workers runs next to the general workers (quick merges),
        so a queued short job waits only for other short ones."""
        self.sessions = sessions
        self.short_kinds = tuple(short_kinds)

    def _lined_view(self, s: Session, job: Job) -> JobView:
        """The view of ``job`` with, when it is queued, its place in line and what runs or waits ahead of it
        (the other jobs of its lane: the short kinds for a short job, every kind otherwise)."""
        owner = self._owner_name(s, job.owner_id)
        if job.status != "queued":
            return _view(job, owner)
        lane = Job.kind.in_(self.short_kinds) if job.kind in self.short_kinds else None
        waiting = select(Job).where(Job.status == "queued", Job.created_at < job.created_at)
        running = select(Job).where(Job.status == "running")
        if lane is not None:
            waiting, running = waiting.where(lane), running.where(lane)
        n_waiting = s.scalar(select(func.count()).select_from(waiting.subquery())) or 0
        shown = [*s.scalars(running.order_by(Job.started_at).limit(MAX_AHEAD)),
                 *s.scalars(waiting.order_by(Job.created_at).limit(MAX_AHEAD))][:MAX_AHEAD]
        ahead = tuple({"id": j.id if j.owner_id == job.owner_id else None, "kind": j.kind, "status": j.status,
                       "progress": float(j.progress or 0.0)} for j in shown)
        return _view(job, owner, n_waiting + 1, ahead)

    def _owner_name(self, s: Session, owner_id: int | None) -> str | None:
        return s.get(User, owner_id).name if owner_id is not None and s.get(User, owner_id) else None

    def submit(self, kind: str, owner_id: int | None, request: dict[str, Any],
               recipe_hash: str | None = None,
               reuse: Callable[[JobView], bool] | None = None) -> tuple[JobView, bool]:
        """Queue a job, or return the owner's newest live or succeeded job with the same recipe hash (that
        ``reuse`` accepts, when given).

        Returns:
            (job, deduplicated): ``deduplicated`` is True when an existing job was returned.
        """
        with self.sessions.begin() as s:
            if recipe_hash is not None:
                existing = s.scalars(
                    select(Job)
                    .where(Job.recipe_hash == recipe_hash, Job.owner_id == owner_id,
                           Job.status.in_(("queued", "running", "succeeded")))
                    .order_by(Job.created_at.desc())
                ).first()
                if existing is not None:
                    view = _view(existing, self._owner_name(s, owner_id))
                    if reuse is None or reuse(view):
                        return view, True
            job = Job(
                id=uuid.uuid4().hex, kind=kind, status="queued", owner_id=owner_id, request=request,
                recipe_hash=recipe_hash, progress=0.0, message="queued", log=[], attempts=0,
                cancel_requested=False, created_at=_now(),
            )
            s.add(job)
            s.flush()
            return _view(job, self._owner_name(s, owner_id)), False

    def _find(self, s: Session, job_id: str, viewer_id: int | None, check_owner: bool) -> Job:
        """The job whose id is ``job_id`` or starts with it (among the jobs the viewer may see).

        Raises:
            NotFoundError: no such job visible to the viewer.
            AmbiguousError: the prefix matches several of the viewer's jobs (the message lists them).
        """
        job = s.get(Job, job_id)
        if job is None and job_id and len(job_id) < 32 and all(c in "0123456789abcdef" for c in job_id.lower()):
            q = select(Job).where(Job.id.startswith(job_id.lower())).order_by(Job.created_at.desc())
            if check_owner:
                q = q.where((Job.owner_id == viewer_id) | Job.owner_id.is_(None))
            found = list(s.scalars(q.limit(MAX_CANDIDATES + 1)))
            if len(found) > 1:
                ids = [j.id for j in found[:MAX_CANDIDATES]]
                more = " ..." if len(found) > MAX_CANDIDATES else ""
                raise AmbiguousError(f"job id prefix {job_id!r} matches {len(found)}{'+' if more else ''} jobs: "
                                     f"{', '.join(ids)}{more}; give more characters", job_id=job_id,
                                     candidates=ids)
            job = found[0] if found else None
        if job is None or (check_owner and job.owner_id is not None and job.owner_id != viewer_id):
            raise NotFoundError(f"no job {job_id!r}", job_id=job_id)
        return job

    def get(self, job_id: str, viewer_id: int | None = None, *, check_owner: bool = True) -> JobView:
        """A job by id or by a unique prefix of its id. Jobs are visible to their owner only (404 for others,
        like private adapters).

        Raises:
            NotFoundError: no such job visible to the viewer.
            AmbiguousError: the prefix matches several of the viewer's jobs.
        """
        with self.sessions() as s:
            job = self._find(s, job_id, viewer_id, check_owner)
            return self._lined_view(s, job)

    def list(self, viewer_id: int | None, *, status: str | None = None, limit: int = 50) -> list[JobView]:
        with self.sessions() as s:
            q = select(Job).where(Job.owner_id == viewer_id).order_by(Job.created_at.desc()).limit(limit)
            if status:
                q = q.where(Job.status == status)
            return [self._lined_view(s, j) for j in s.scalars(q)]

    def cancel(self, job_id: str, viewer_id: int | None) -> JobView:
        """Cancel a queued job at once, or ask a running job's worker to stop at its next progress report.

        Raises:
            NotFoundError: no such job visible to the viewer.
            ConflictError: the job has already finished.
        """
        job_id = self.get(job_id, viewer_id).id
        with self.sessions.begin() as s:
            job = s.get(Job, job_id, with_for_update=True)
            assert job is not None
            if job.status in FINISHED:
                raise ConflictError(f"job {job_id} already {job.status}; nothing to cancel", status=job.status)
            if job.status == "queued":
                job.status, job.finished_at, job.message = "cancelled", _now(), "cancelled before it started"
            job.cancel_requested = True
            job.log = [*(job.log or []), "cancel requested"]
        return self.get(job_id, viewer_id)

    # --- worker side -------------------------------------------------------------------------

    def claim(self, worker: str, kinds: tuple[str, ...] | None = None, job_id: str | None = None) -> JobView | None:
        """Atomically take the oldest queued job (optimistic update: exactly one worker wins).

        Args:
            worker: the claimer's name (stored in the row). kinds: only jobs of these kinds.
            job_id: only this job (a dispatcher started a task for it): None when it is no longer queued.
        """
        for _ in range(5):
            with self.sessions.begin() as s:
                q = select(Job.id).where(Job.status == "queued").order_by(Job.created_at).limit(1)
                if kinds:
                    q = q.where(Job.kind.in_(kinds))
                if job_id is not None:
                    q = q.where(Job.id == job_id)
                job_id = s.scalar(q)
                if job_id is None:
                    return None
                now = _now()
                res = s.execute(
                    update(Job)
                    .where(Job.id == job_id, Job.status == "queued")
                    .values(status="running", worker=worker, started_at=now, heartbeat_at=now,
                            attempts=Job.attempts + 1, message="started")
                )
                if res.rowcount == 1:
                    job = s.get(Job, job_id)
                    assert job is not None
                    s.refresh(job)
                    return _view(job, self._owner_name(s, job.owner_id))
        return None

    def report(self, job_id: str, progress: float | None = None, message: str | None = None,
               log: str | None = None) -> bool:
        """Record progress (0-1), a message and/or a log line; heartbeat. Returns True if cancel was asked."""
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return True
            if progress is not None:  # monotonic: a job's progress never goes back
                job.progress = max(float(job.progress or 0.0), min(1.0, float(progress)))
            if message is not None:
                job.message = message
            if log is not None:
                job.log = [*(job.log or []), f"{_now().strftime('%H:%M:%S')} {log}"][-MAX_LOG_LINES:]
            job.heartbeat_at = _now()
            return bool(job.cancel_requested)

    def finish(self, job_id: str, status: str, *, result: dict[str, Any] | None = None,
               error: dict[str, Any] | None = None, message: str = "") -> None:
        with self.sessions.begin() as s:
            job = s.get(Job, job_id)
            if job is None:
                return
            job.status, job.result, job.error = status, result, error
            job.message = message or status
            job.finished_at = _now()
            if status == "succeeded":
                job.progress = 1.0

    def queued(self, limit: int = 1000) -> list[tuple[str, str]]:
        """``(id, kind)`` of the oldest queued jobs."""
        with self.sessions() as s:
            return [(i, k) for i, k in s.execute(
                select(Job.id, Job.kind).where(Job.status == "queued").order_by(Job.created_at).limit(limit))]

    def states(self, job_ids: list[str]) -> dict[str, tuple[str, bool]]:
        """``id -> (status, cancel_requested)`` of the given jobs (unknown ids left out)."""
        if not job_ids:
            return {}
        with self.sessions() as s:
            rows = s.execute(select(Job.id, Job.status, Job.cancel_requested).where(Job.id.in_(job_ids)))
            return {i: (st, bool(c)) for i, st, c in rows}

    def worker_lost(self, job_id: str, reason: str) -> str:
        """The worker running ``job_id`` died: re-queue it, or fail it with ``reason`` after MAX_ATTEMPTS.

        Returns the job's new status (unchanged when it is not running).
        """
        with self.sessions.begin() as s:
            job = s.get(Job, job_id, with_for_update=True)
            if job is None:
                return "gone"
            if job.status != "running":
                return job.status
            if job.cancel_requested:
                job.status, job.finished_at, job.message = "cancelled", _now(), "cancelled; its worker stopped"
            elif (job.attempts or 0) >= MAX_ATTEMPTS:
                job.status, job.finished_at = "failed", _now()
                job.message = f"worker lost {job.attempts} times: {reason}"
                job.error = {"code": "worker_lost", "message": job.message}
            else:
                job.status, job.worker, job.message = "queued", None, f"re-queued: {reason}"
            job.log = [*(job.log or []), f"{_now().strftime('%H:%M:%S')} worker lost: {reason}"][-MAX_LOG_LINES:]
            return job.status

    def requeue_stale(self, older_than: timedelta = timedelta(minutes=2)) -> int:
        """Re-queue running jobs whose worker stopped heart-beating; fail them after MAX_ATTEMPTS."""
        cutoff = _now() - older_than
        with self.sessions.begin() as s:
            return _requeue(s.scalars(select(Job).where(Job.status == "running", Job.heartbeat_at < cutoff)))

    def requeue_worker(self, worker: str) -> int:
        """Give the running jobs of a worker that died back to the queue (fail those that reached MAX_ATTEMPTS).

        Returns:
            how many jobs it took back.
        """
        with self.sessions.begin() as s:
            return _requeue(s.scalars(select(Job).where(Job.status == "running", Job.worker == worker)))

    def touch(self, job_id: str) -> None:
        """Heartbeat a running job (its worker's heartbeat thread does, also while the handler reports nothing)."""
        with self.sessions.begin() as s:
            s.execute(update(Job).where(Job.id == job_id, Job.status == "running").values(heartbeat_at=_now()))


def _requeue(jobs: Iterable[Job]) -> int:
    n = 0
    for job in jobs:
        n += 1
        lost = f"its worker {job.worker} stopped" if job.worker else "its worker stopped"
        if job.attempts >= MAX_ATTEMPTS:
            job.status, job.finished_at = "failed", _now()
            job.message = f"failed: {lost} (attempt {job.attempts} of {MAX_ATTEMPTS})"
            job.error = {"code": "worker_lost", "message": f"worker lost {job.attempts} times"}
            job.log = [*(job.log or []), f"{_now().strftime('%H:%M:%S')} {job.message}"][-MAX_LOG_LINES:]
        else:
            job.message = f"re-queued: {lost} (attempt {job.attempts} of {MAX_ATTEMPTS})"
            job.log = [*(job.log or []), f"{_now().strftime('%H:%M:%S')} {job.message}"][-MAX_LOG_LINES:]
            job.status, job.worker = "queued", None
    return n
