"""Start and stop worker processes next to the API (what ``loom serve`` does with ``--workers N``)."""

from __future__ import annotations

import os
import subprocess
import sys


def start_workers(n: int, env: dict[str, str] | None = None) -> list[subprocess.Popen[bytes]]:
    """Spawn ``n`` worker processes (``python -m hub.jobs.worker``) that exit when this process does."""
    child_env = {**os.environ, **(env or {})}
    return [
        subprocess.Popen([sys.executable, "-m", "hub.jobs.worker", "--parent-pid", str(os.getpid())], env=child_env)
        for _ in range(max(0, n))
    ]


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
