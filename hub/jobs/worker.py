"""A worker: claims queued jobs and runs the handler of their kind.

The handlers are given to the worker (``Worker(queue, handlers)``); this package imports no service.
The composition root (:mod:`hub.services.container`) builds the handler table, and ``loom worker``
(which ``loom serve`` starts ``LOOM_WORKERS`` times as child processes) runs a worker with it.
Workers are separate processes, so a long merge never blocks the API, and the queue lives in the
database, so queued jobs survive an API restart.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any

from hub.core.errors import LoomError
from hub.jobs.queue import JobQueue, JobView
from hub.jobs.reporter import JobCancelled, QueueReporter, Reporter
from hub.jobs.workers import WorkerTable

log = logging.getLogger("loom.worker")

#: a job handler: runs the job, reporting through ``report``; returns the job's result (a JSON dict)
Handler = Callable[[JobView, Reporter], dict[str, Any]]


class Worker:
    """Runs jobs of the kinds in ``handlers`` from ``queue`` until stopped.

    Args:
        queue: the job queue. handlers: job kind -> handler. name: this worker's name in job rows.
    """

    def __init__(self, queue: JobQueue, handlers: Mapping[str, Handler], name: str | None = None, *,
                 lane: str = "all", table: WorkerTable | None = None, heartbeat_s: float = 2.0) -> None:
        """``lane``: what this worker's handlers are (recorded in ``table``). ``table``: the workers table it
        registers in and heart-beats to every ``heartbeat_s`` seconds (from a thread, also while a job runs)."""
        self.queue = queue
        self.handlers = dict(handlers)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lane, self.table, self.heartbeat_s = lane, table, heartbeat_s
        self.current: str | None = None  # the job running now

    def _heartbeat(self, done: threading.Event) -> None:
        assert self.table is not None
        while not done.wait(self.heartbeat_s):
            try:
                self.table.beat(self.name, self.current)
            except Exception:  # noqa: BLE001 - a database hiccup must not stop the heartbeat
                log.warning("heartbeat of %s failed:\n%s", self.name, traceback.format_exc())

    def run_once(self) -> bool:
        """Run one queued job if there is one. Returns whether a job ran."""
        job = self.queue.claim(self.name, tuple(self.handlers))
        if job is None:
            return False
        report = QueueReporter(self.queue, job.id)
        log.info("job %s (%s) started", job.id, job.kind)
        self.current = job.id
        try:
            report.log(f"started on worker {self.name}")
            result = self.handlers[job.kind](job, report)
        except JobCancelled:
            self.queue.finish(job.id, "cancelled", message="cancelled; nothing was published")
        except LoomError as e:
            self.queue.report(job.id, log=f"failed: {e.message}")
            self.queue.finish(job.id, "failed", error={"code": e.code, "message": e.message}, message=e.message)
        except Exception as e:  # noqa: BLE001 - a job's crash must not kill the worker
            log.error("job %s crashed:\n%s", job.id, traceback.format_exc())
            msg = f"{type(e).__name__}: {e}"
            self.queue.report(job.id, log=f"crashed: {msg}")
            self.queue.finish(job.id, "failed", error={"code": "internal", "message": msg}, message=msg)
        else:
            self.queue.report(job.id, progress=1.0, log="done")
            self.queue.finish(job.id, "succeeded", result=result, message="done")
        finally:
            self.current = None
        return True

    def run_forever(self, poll: float = 0.5, *, parent_pid: int | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll the queue; exit when ``should_stop()`` or when the parent process is gone. With a workers table:
        registered, heart-beating, and marked stopped on the way out."""
        done = threading.Event()
        if self.table is not None:
            self.table.register(self.name, self.lane, socket.gethostname(), os.getpid())
            threading.Thread(target=self._heartbeat, args=(done,), name="loom-heartbeat", daemon=True).start()
        try:
            self._sweep()
            last_sweep = time.monotonic()
            while not should_stop():
                if parent_pid is not None and os.getppid() != parent_pid:
                    log.info("parent %s gone; worker exits", parent_pid)
                    return
                ran = self.run_once()
                if time.monotonic() - last_sweep > 30:
                    self._sweep()
                    last_sweep = time.monotonic()
                if not ran:
                    time.sleep(poll)
        finally:
            done.set()
            if self.table is not None:
                self.table.stopped(self.name)

    def _sweep(self) -> None:
        """Re-queue the jobs of workers that died unseen (stale heartbeats)."""
        if self.table is not None:
            self.table.sweep()
        self.queue.requeue_stale()
