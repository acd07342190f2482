"""PROTOTYPE, not wired into the services: queued jobs run as Ray tasks (issue 22, the Ray step builds on what
this showed; run by ``benchmarks/ray_probe.py``).

The job row in Loom's database stays the source of truth (status, progress, log, dedup, cancel): a Ray task
is just a short-lived worker. :func:`dispatch` looks at what is queued and starts one task per job with the
resources its kind needs (``num_gpus=1`` for training and generation when the cluster has GPUs); the task
builds its own Hub from the same settings, claims a job with :meth:`Worker.run_once` (the code ``loom worker``
runs) and exits. Cancel keeps working because handlers poll the row. ``max_retries`` makes Ray start the task
again when its worker process dies; the claimed row then stays ``running`` until the queue's stale sweep
(``requeue_stale``) gives it back, so the attempt limit holds.

Known gaps (for the real step): a task claims the oldest queued job of any kind (``Worker.run_once`` takes no
kind filter yet), so a GPU task can take a CPU job; the dispatcher does not remember what it already
started (it must run in one place and count running tasks); ``ray.cancel`` of a running task is not needed
while handlers poll for cancel.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from hub.db.jobs import Job

#: job kinds that want a GPU when the cluster has one
GPU_KINDS = frozenset({"router_train", "train_generator", "generate", "transfer"})
_REMOTE: Any = None


def queued_kinds(sessions: Any) -> dict[str, int]:
    """How many jobs of each kind are queued."""
    with sessions() as s:
        return dict(s.execute(select(Job.kind, func.count()).where(Job.status == "queued").group_by(Job.kind)).all())


def _run_one(settings_dict: dict[str, Any]) -> bool:
    """Body of the Ray task: one worker pass over the queue with a Hub of its own."""
    import ray

    from hub.services.container import Hub
    from hub.settings import get_settings

    hub = Hub(get_settings(**settings_dict), migrate=False)
    try:
        from hub.jobs.worker import Worker

        return Worker(hub.queue, hub.handlers, name=f"ray-task:{ray.get_runtime_context().get_task_id()[:12]}").run_once()
    finally:
        hub.close()


def remote_run_one() -> Any:
    """The Ray remote function (built on first use, so importing this module does not import ray)."""
    global _REMOTE
    if _REMOTE is None:
        import ray

        _REMOTE = ray.remote(num_cpus=1, max_retries=2)(_run_one)
    return _REMOTE


def dispatch(sessions: Any, settings_dict: dict[str, Any], *, cluster_has_gpus: bool) -> list[Any]:
    """Start one Ray task per queued job; returns their object refs (each resolves to whether a job ran)."""
    run = remote_run_one()
    refs = []
    for kind, n in sorted(queued_kinds(sessions).items()):
        gpus = 1 if cluster_has_gpus and kind in GPU_KINDS else 0
        refs += [run.options(num_gpus=gpus, name=f"loom-job-{kind}").remote(settings_dict) for _ in range(n)]
    return refs
