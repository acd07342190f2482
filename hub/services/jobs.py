"""Jobs as the API and the CLI see them: submit, list, show, cancel, and the public view of a job.

Every job-producing service (compositions, generation, router training, Hugging Face sync) submits
through :class:`JobService`; the composition root's :func:`~hub.services.container.job_handlers` names the
handler of each kind (a meta-test checks that every kind a service submits has one).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.core.errors import NotFoundError
from hub.jobs.queue import JobQueue, JobView

if TYPE_CHECKING:  # pragma: no cover
    from hub.db.models import User
    from hub.jobs.workers import WorkerTable
    from hub.services.metrics import Metrics
    from hub.services.users import UserService


class JobService:
    """Submit and observe jobs in ``queue``."""

    def __init__(self, queue: JobQueue, exists: Callable[[str], bool] | None = None) -> None:
        self.queue = queue
        self.exists = exists  # whether an adapter/router/generator ``ns/name`` is registered

    def submit(self, kind: str, owner_id: int | None, request: dict[str, Any],
               recipe_hash: str | None = None) -> tuple[JobView, bool]:
        """Queue a job (or return the owner's identical live or succeeded one: ``(job, deduplicated)``).

        An identical job is one with the same recipe that was asked for the same output name and, when it
        succeeded, whose result is still registered: the same recipe under a new name, or after its result was
        deleted, is a new job (it was the old one, and the name asked for never appeared)."""
        want = _output_name(request)

        def reuse(old: JobView) -> bool:
            if _output_name(old.request) != want:
                return False
            res = old.result or {}
            made = res.get("adapter") or res.get("router") or res.get("generator")
            return old.status != "succeeded" or self.exists is None or not made or self.exists(str(made))

        return self.queue.submit(kind, owner_id, request, recipe_hash, reuse=reuse)

    def get(self, job_id: str, viewer_id: int | None) -> JobView:
        return self.queue.get(job_id, viewer_id)

    def list(self, viewer_id: int | None, *, status: str | None = None, limit: int = 50) -> list[JobView]:
        return self.queue.list(viewer_id, status=status, limit=limit)

    def cancel(self, job_id: str, viewer_id: int | None) -> JobView:
        return self.queue.cancel(job_id, viewer_id)

    def log(self, job_id: str, line: str) -> None:
        """Append a line to a job's log (e.g. why a service chose what it queued)."""
        self.queue.report(job_id, log=line)


#: the result keys naming what a job published, by artifact kind
RESULT_KINDS = ("adapter", "router", "generator")


def result_name(result: dict[str, Any] | None) -> str | None:
    """``ns/name@version`` of what a finished job published (an adapter, a router or a generator), else None."""
    for key in RESULT_KINDS:
        name = (result or {}).get(key)
        if isinstance(name, str) and name:
            version = (result or {}).get("version")
            return name if "@" in name or version is None else f"{name}@{version}"
    return None


def job_summary(job: JobView) -> dict[str, Any]:
    """The public view of a job (what the API returns): the request without its internal log lines, and
    ``result_name``, the ``ns/name@version`` it published."""
    d = job.to_dict()
    d["request"] = {k: x for k, x in job.request.items() if k != "log"}
    d["result_name"] = result_name(job.result)
    return d


def job_owner(users: UserService, job: JobView) -> User:
    """The user a job runs as.

    Raises:
        NotFoundError: the owner was deleted after the job was queued.
    """
    try:
        return users.get(job.owner_id)
    except NotFoundError:
        raise NotFoundError("the job's owner no longer exists") from None


def worker_health(table: WorkerTable, pool: dict[str, Any] | None = None,
                  metrics: Metrics | None = None) -> tuple[bool, dict[str, Any]]:
    """Whether the job workers are healthy, and what ``/healthz`` says of them.

    Args:
        table: the workers table (every worker of the deployment registers there).
        pool: ``WorkerPool.status()`` of this process's supervised workers (``loom serve``), if any.
        metrics: gauges to update (``loom_workers{lane,state}``, ``loom_worker_restarts``).

    Returns:
        (healthy, info): unhealthy while a registered worker stopped heart-beating, or while fewer of the
        supervised workers are up than expected (a dead one being replaced).
    """
    workers = table.list()
    up = [w for w in workers if w.up()]
    down = [w for w in workers if not w.up()]
    info: dict[str, Any] = {"up": len(up), "down": len(down)}
    if down:
        info["down_workers"] = [w.name for w in down]
    healthy = not down
    if pool is not None:
        info.update(expected=pool["expected"], supervised_up=pool["up"], restarts=pool["restarts"],
                    lanes=pool["lanes"])
        healthy = healthy and pool["up"] >= pool["expected"]
    if metrics is not None:
        metrics.workers.clear()
        for lane in sorted({w.lane for w in workers} | set((pool or {}).get("lanes", {}))):
            metrics.workers.labels(lane=lane, state="up").set(sum(w.lane == lane for w in up))
            metrics.workers.labels(lane=lane, state="down").set(sum(w.lane == lane for w in down))
            if pool is not None and lane in pool["lanes"]:
                metrics.workers.labels(lane=lane, state="expected").set(pool["lanes"][lane]["expected"])
        metrics.worker_restarts.set((pool or {}).get("restarts", 0))
    return healthy, info


def _output_name(request: dict[str, Any]) -> str | None:
    out = request.get("output")
    return out.get("name") if isinstance(out, dict) else None
