"""Start and stop worker processes next to the API (what ``loom serve`` does with ``--workers N``).

Each worker runs ``python -m hub.cli worker --lane LANE --parent-pid <this process>`` and exits when this process
does; the command is built here, the handler table by the worker process's own composition root.
:class:`WorkerPool` supervises them: a dead worker is replaced and its running jobs go back to the queue.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import traceback
from typing import Any

from hub.jobs.workers import WorkerTable

log = logging.getLogger("loom.workers")


def worker_command(parent_pid: int | None = None, lane: str = "all") -> list[str]:
    """The command line of one worker process (``loom worker --lane LANE``) that exits when ``parent_pid`` does."""
    return [sys.executable, "-m", "hub.cli", "worker", "--lane", lane, "--parent-pid", str(parent_pid or os.getpid())]


def start_workers(n: int, env: dict[str, str] | None = None, *, short: int = 0) -> list[subprocess.Popen[bytes]]:
    """Spawn ``n`` general worker processes and ``short`` workers of the short lane, which exit when this
    process does."""
    child_env = {**os.environ, **(env or {})}
    lanes = ["all"] * max(0, n) + ["short"] * max(0, short)
    return [subprocess.Popen(worker_command(lane=lane), env=child_env) for lane in lanes]


def stop_workers(procs: list[subprocess.Popen[bytes]], timeout: float = 10.0) -> None:
    """Terminate workers and wait for them (kill after ``timeout``)."""
    for p in procs:
        if p.poll() is None:
            p.terminate()
    for p in procs:
        try:
            p.wait(timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


class WorkerPool:
    """``loom serve``'s workers, supervised: a worker that dies (``kill -9``, a crash, out of memory) is marked dead
    in the workers table, its running jobs go back to the queue (the attempt limit holds), and a new worker of
    the same lane takes its place.

    Args:
        table: the workers table (where workers register and heartbeat).
        general, short: how many workers of each lane.
        env: extra environment of the workers.
        check_s: seconds between two checks of the processes.
    """

    def __init__(self, table: WorkerTable, general: int, short: int = 0, env: dict[str, str] | None = None,
                 check_s: float = 1.0) -> None:
        self.table, self.env, self.check_s = table, {**os.environ, **(env or {})}, check_s
        self.lanes = ["all"] * max(0, general) + ["short"] * max(0, short)
        self.procs: list[subprocess.Popen[bytes]] = []
        self.restarts = 0
        self._lock = threading.Lock()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _spawn(self, lane: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(worker_command(lane=lane), env=self.env)

    def start(self) -> WorkerPool:
        """Start the workers and the thread that watches them."""
        with self._lock:
            self.procs = [self._spawn(lane) for lane in self.lanes]
        if self.lanes:
            self._thread = threading.Thread(target=self._watch, name="loom-worker-pool", daemon=True)
            self._thread.start()
        return self

    def _watch(self) -> None:
        while not self._done.wait(self.check_s):
            try:
                self.check()
            except Exception:  # noqa: BLE001 - the watcher must outlive a database hiccup
                log.warning("worker supervision failed:\n%s", traceback.format_exc())

    def check(self) -> int:
        """Replace the workers that died since the last check; returns how many were replaced."""
        replaced = 0
        for i, lane in enumerate(self.lanes):
            with self._lock:
                proc = self.procs[i]
                rc = proc.poll()
                if rc is None or self._done.is_set():
                    continue
                self.procs[i] = self._spawn(lane)
                self.restarts += 1
            name = f"{socket.gethostname()}:{proc.pid}"
            jobs = self.table.died(name)
            log.warning("worker %s (%s lane) died with exit code %s; %d running job(s) re-queued; "
                        "started worker %s", name, lane, rc, jobs, self.procs[i].pid)
            replaced += 1
        return replaced

    def status(self) -> dict[str, Any]:
        """``expected``, ``up`` (processes alive and heart-beating in the workers table), ``restarts``, and the
        workers by lane."""
        host = socket.gethostname()
        live = {w.name for w in self.table.list() if w.up()}
        with self._lock:
            up = [lane for lane, p in zip(self.lanes, self.procs, strict=True)
                  if p.poll() is None and f"{host}:{p.pid}" in live]
        return {"expected": len(self.lanes), "up": len(up), "restarts": self.restarts,
                "lanes": {lane: {"expected": self.lanes.count(lane), "up": up.count(lane)} for lane in set(self.lanes)}}

    def stop(self, timeout: float = 10.0) -> None:
        """Stop watching, then stop the workers."""
        self._done.set()
        if self._thread is not None:
            self._thread.join(timeout)
        with self._lock:
            stop_workers(self.procs, timeout)
