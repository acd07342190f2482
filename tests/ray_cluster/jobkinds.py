"""Job kinds for the Ray dispatcher tests, run inside Ray tasks: the hub's own handlers plus probes.

``probe`` handlers return the resources Ray gave the task; ``sleep`` reports progress for a while (or never,
with ``quiet``); ``crash`` kills its own worker process.
"""

from __future__ import annotations

import os
import signal
import time
from typing import Any

#: kinds run by the probe handler: a GPU kind (the hub's own ``generate`` is replaced) and a CPU kind
PROBED = ("generate", "probe_cpu")


def probe(job: Any, report: Any) -> dict[str, Any]:
    import ray

    return {"resources": ray.get_runtime_context().get_assigned_resources(), "pid": os.getpid()}


def sleep(job: Any, report: Any) -> dict[str, Any]:
    report.log(f"pid {os.getpid()}")
    end = time.monotonic() + float(job.request.get("seconds", 5))
    while time.monotonic() < end:
        if not job.request.get("quiet"):
            report(0.5, "sleeping", force=True)
        time.sleep(0.1)
    return {"slept": True, "pid": os.getpid()}


def crash(job: Any, report: Any) -> dict[str, Any]:
    report.log(f"pid {os.getpid()}")
    os.kill(os.getpid(), signal.SIGKILL)
    raise AssertionError("unreachable")


def run_task(settings_dict: dict[str, Any], job_id: str, worker_name: str) -> bool:
    """Like :func:`hub.services.container.run_queued_job`, with the probe kinds added to the handler table."""
    import socket

    from hub.jobs.worker import Worker
    from hub.services.container import Hub
    from hub.settings import get_settings

    with Hub(get_settings(**settings_dict), migrate=False) as hub:
        handlers = {**hub.handlers, **dict.fromkeys(PROBED, probe), "sleep": sleep, "crash": crash}
        return Worker(hub.queue, handlers, name=f"{worker_name}:{socket.gethostname()}:{os.getpid()}").run_once(job_id)
