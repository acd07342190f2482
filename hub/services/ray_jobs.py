"""Queued jobs run as Ray tasks (``LOOM_JOBS=ray``): one dispatcher, in the API process, starts them.

The job row in Loom's database stays the source of truth (status, progress, log, dedup by recipe, cancel);
Ray only executes. :class:`RayJobDispatcher` polls the queue and starts one Ray task per queued job, with the
resources its kind needs (``num_gpus=1`` for training and generation kinds when the cluster has GPUs). The task
(:func:`hub.services.container.run_queued_job`) builds its own Hub from the same settings and claims THAT job
(``JobQueue.claim(job_id=...)``), so a GPU task never takes a CPU job. The dispatcher remembers what it started:

- a task that ends normally: nothing to do (the task wrote the row);
- cancel: the API marks the row; the dispatcher sees it and ``ray.cancel``\\ s the task (a task still waiting
  for resources never starts; a running one is interrupted even if its handler never reports), then marks the
  row cancelled if the task left it running;
- the task's worker process dies (``WorkerCrashedError``, node lost): the row is re-queued and dispatched
  again, up to the queue's attempt limit, then failed with the reason (``JobQueue.worker_lost``);
- the Ray cluster goes away: every job it was running is handled as above and the dispatcher reconnects with
  a back-off; queued rows wait in the database, so they survive restarts of the API and of the cluster
  (rows left ``running`` by a previous API process come back through the queue's stale-heartbeat sweep).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from hub.jobs.queue import JobQueue
from hub.services.ray_cluster import RayConnection

log = logging.getLogger("loom.ray_jobs")

#: job kinds that want a GPU when the cluster has one (training and generation)
GPU_KINDS = frozenset({"router_train", "train_generator", "generate", "transfer"})

#: the body of a job's Ray task: ``(settings_dict, job_id, worker_name) -> ran``
TaskBody = Callable[[dict[str, Any], str, str], bool]


@dataclass
class Started:
    """A task the dispatcher started: its object ref, and whether it was asked to cancel."""

    ref: Any
    kind: str
    cancelled: bool = False
    at: float = field(default_factory=time.monotonic)


class RayJobDispatcher:
    """Run queued jobs as Ray tasks; see the module docstring.

    Args:
        queue: the job queue. connection: this process's :class:`RayConnection`.
        settings_dict: what a task builds its Hub from (no secrets: tasks read those from their environment).
        task: the task body (default :func:`hub.services.container.run_queued_job`, given by the container).
        poll: seconds between passes. stale_after: running rows without a heartbeat this long are re-queued.
        max_in_flight: most tasks started and not finished (the rest wait queued in the database).
    """

    def __init__(self, queue: JobQueue, connection: RayConnection, settings_dict: dict[str, Any], task: TaskBody,
                 *, poll: float = 0.5, stale_after: timedelta = timedelta(minutes=2), max_in_flight: int = 64) -> None:
        self.queue, self.connection, self.settings_dict, self.task = queue, connection, settings_dict, task
        self.poll, self.stale_after, self.max_in_flight = poll, stale_after, max_in_flight
        self.started: dict[str, Started] = {}
        self._remote: Any = None
        self._gpus = False
        self._online = False
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_sweep = 0.0

    # -- lifecycle -------------------------------------------------------------------------------
    def start(self) -> None:
        """Connect (raises ClusterUnavailableError naming LOOM_RAY_ADDRESS) and start dispatching in a thread.

        Jobs this dispatcher started on a cluster that has gone since (``ray.shutdown``) are handled as lost.
        """
        import ray

        if self._online and not ray.is_initialized():
            self._cluster_lost("the Ray cluster went away")
        self._connect()
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="loom-ray-dispatcher")
        self._thread.start()

    def stop(self) -> None:
        """Stop dispatching (started tasks keep running; their rows are the source of truth)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=30)
            self._thread = None

    def _connect(self) -> None:
        import ray

        self.connection.connect()
        self._gpus = self.connection.has_gpus()
        self._remote = ray.remote(num_cpus=1, max_retries=0)(self.task)
        self._online = True

    def _loop(self) -> None:
        backoff = self.poll
        while not self._stop.is_set():
            try:
                self.step()
                backoff = self.poll
            except Exception as e:  # noqa: BLE001 - the dispatcher must outlive a cluster restart
                log.warning("ray dispatcher: %s: %s; retrying in %.1fs", type(e).__name__, e, backoff)
                backoff = min(backoff * 2, 10.0)
            self._stop.wait(backoff)

    # -- one pass ----------------------------------------------------------------------------------
    def step(self) -> None:
        """One pass: notice a lost cluster, collect finished tasks, forward cancels, start queued jobs."""
        import ray

        if self._online and not ray.is_initialized():
            self._cluster_lost("the Ray cluster went away")
        if not self._online:
            self._connect()
        self._collect()
        self._forward_cancels()
        if time.monotonic() - self._last_sweep > 30:
            self.queue.requeue_stale(self.stale_after)
            self._last_sweep = time.monotonic()
        self._dispatch()

    def _cluster_lost(self, reason: str) -> None:
        self._online = False
        for job_id in list(self.started):
            self.queue.worker_lost(job_id, reason)
        self.started.clear()

    def _collect(self) -> None:
        import ray
        from ray.exceptions import GetTimeoutError, RayError, RayTaskError, TaskCancelledError

        if not self.started:
            return
        by_ref = {s.ref: job_id for job_id, s in self.started.items()}
        done, _ = ray.wait(list(by_ref), num_returns=len(by_ref), timeout=0)
        for ref in done:
            job_id = by_ref[ref]
            started = self.started.pop(job_id)
            try:
                ray.get(ref, timeout=5)
            except TaskCancelledError:
                self.queue.worker_lost(job_id, "cancelled")  # a cancel-requested running row becomes cancelled
            except RayTaskError as e:  # the task body raised (not a handler: the worker catches those)
                self.queue.worker_lost(job_id, f"task failed: {str(e).splitlines()[-1][:300]}")
            except GetTimeoutError:
                self.started[job_id] = started
            except RayError as e:  # the worker process or its node died
                reason = f"{type(e).__name__}: {str(e).splitlines()[0][:300]}"
                if started.cancelled:
                    reason = "cancelled"
                status = self.queue.worker_lost(job_id, reason)
                log.warning("job %s: worker lost (%s); now %s", job_id, reason, status)

    def _forward_cancels(self) -> None:
        import ray

        states = self.queue.states(list(self.started))
        for job_id, s in self.started.items():
            status, cancel = states.get(job_id, ("gone", True))
            if (cancel or status in ("cancelled", "failed", "gone")) and not s.cancelled:
                s.cancelled = True
                ray.cancel(s.ref, force=False)

    def _dispatch(self) -> None:
        room = self.max_in_flight - len(self.started)
        if room <= 0:
            return
        for job_id, kind in self.queue.queued(limit=room + len(self.started)):
            if job_id in self.started:
                continue
            if room <= 0:
                break
            gpus = 1 if self._gpus and kind in GPU_KINDS else 0
            ref = self._remote.options(num_gpus=gpus, name=f"loom-job:{kind}:{job_id[:12]}").remote(
                self.settings_dict, job_id, f"ray:{kind}")
            self.started[job_id] = Started(ref, kind)
            room -= 1
            log.info("job %s (%s) dispatched as a Ray task (num_gpus=%d)", job_id, kind, gpus)
