"""Start and stop worker processes next to the API (what ``loom serve`` does with ``--workers N``).

Each worker runs ``python -m hub.cli worker --parent-pid <this process>`` and exits when this process
does; the command is built here, the handler table by the worker process's own composition root.
"""

from __future__ import annotations

import os
import subprocess
import sys


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
