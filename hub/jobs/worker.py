"""Worker processes: claim queued jobs and run the handler registered for their kind.

Run one with ``loom worker`` (``loom serve`` starts ``LOOM_WORKERS`` of them as child processes).
Workers are separate processes, so a long merge never blocks the API, and the queue lives in the
database, so queued jobs survive an API restart.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hub.core.errors import LoomError
from hub.core.registry import Registry
from hub.jobs.queue import JobQueue, JobView

if TYPE_CHECKING:  # pragma: no cover
    from hub.services.hub import Hub

log = logging.getLogger("loom.worker")


class JobCancelled(Exception):
    """Raised inside a handler when its job was cancelled; the worker marks the job cancelled."""


class Reporter:
    """Passed to handlers: ``report(progress, message)`` and ``report.log(line)``; raises on cancel."""

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


Handler = Callable[["Hub", JobView, Reporter], dict[str, Any]]
#: job kind -> handler(hub, job, report) returning the job's result dict.
HANDLERS: Registry[Handler] = Registry("job kind")


def load_handlers() -> None:
    """Import the modules that register handlers (kept lazy: they import torch)."""
    import hub.services.compositions  # noqa: F401
    import hub.services.generation  # noqa: F401  (train_generator, generate, transfer)
    import hub.services.hf  # noqa: F401  (hf_sync: re-sync queued by the Hub's webhook)
    import hub.services.router_training  # noqa: F401  (router_train: gates over registered adapters)


class Worker:
    """Runs jobs from the queue of ``hub`` until stopped."""

    def __init__(self, hub: Hub, name: str | None = None) -> None:
        self.hub = hub
        self.queue = JobQueue(hub.sessions)
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        load_handlers()

    def run_once(self) -> bool:
        """Run one queued job if there is one. Returns whether a job ran."""
        job = self.queue.claim(self.name, tuple(HANDLERS.names()))
        if job is None:
            return False
        report = Reporter(self.queue, job.id)
        log.info("job %s (%s) started", job.id, job.kind)
        try:
            report.log(f"started on worker {self.name}")
            result = HANDLERS.get(job.kind)(self.hub, job, report)
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
        return True

    def run_forever(self, poll: float = 0.5, *, parent_pid: int | None = None,
                    should_stop: Callable[[], bool] = lambda: False) -> None:
        """Poll the queue; exit when ``should_stop()`` or when the parent process is gone."""
        self.queue.requeue_stale()
        last_sweep = time.monotonic()
        while not should_stop():
            if parent_pid is not None and os.getppid() != parent_pid:
                log.info("parent %s gone; worker exits", parent_pid)
                return
            ran = self.run_once()
            if time.monotonic() - last_sweep > 30:
                self.queue.requeue_stale()
                last_sweep = time.monotonic()
            if not ran:
                time.sleep(poll)


def main() -> None:
    """Entry point of ``python -m hub.jobs.worker`` (what ``loom serve`` spawns)."""
    import argparse

    # Under ``python -m`` this file runs as ``__main__``; handlers register into the importable module,
    # so use that module's Worker, never this copy's.
    from hub.jobs.worker import Worker as ImportedWorker
    from hub.services.hub import Hub
    from hub.settings import get_settings

    p = argparse.ArgumentParser(description="Run Loom jobs from the queue.")
    p.add_argument("--parent-pid", type=int, default=None)
    p.add_argument("--poll", type=float, default=0.5)
    args = p.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s worker %(message)s")
    with Hub(get_settings(), migrate=False) as hub:
        ImportedWorker(hub).run_forever(args.poll, parent_pid=args.parent_pid)


if __name__ == "__main__":
    main()
