"""Estimate a zoo build's wall time from short runs of each of its jobs (no full build needed).

Every job of the build (:func:`testbed.zoo.plan_jobs`) is run twice for a few steps; the CPU seconds
of the two runs give its fixed cost (model loading, saving) and its cost per step, hence its cost at
the recipe's step count. :func:`testbed.jobs.simulate` then schedules those costs on ``workers``
idle cores with the build's own policy. CPU seconds, not wall seconds, so a shared machine inflates
the estimate only through cache contention, not through waiting.
"""

from __future__ import annotations

import resource
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from testbed.jobs import Job, simulate
from testbed.models import size_recipe
from testbed.tasks import tasks_for

_IMPORTS = "import torch, transformers, peft, testbed.train; torch.set_num_threads(1)"


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def worker_start_seconds() -> float:
    """CPU seconds a fresh worker process spends importing torch, transformers and peft."""
    code = f"import resource; {_IMPORTS}; r = resource.getrusage(resource.RUSAGE_SELF); print(r.ru_utime + r.ru_stime)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def _timed(job: Job, steps: int) -> float:
    """CPU seconds of ``job`` shortened to ``steps`` steps."""
    from testbed.jobs import lora_job, pretrain_job

    c = _cpu()
    if job.fn is pretrain_job:
        rec, out, seed = job.args
        pretrain_job(replace(rec, steps=steps, warmup=min(rec.warmup, steps)), out, seed)
    elif job.fn is lora_job:
        base_dir, base_id, task, lrec, out, seed, _steps, ckpts = job.args
        lora_job(base_dir, base_id, task, replace(lrec, warmup=min(lrec.warmup, steps)), out, seed, steps, ckpts)
    else:  # pragma: no cover - the build has no other job kinds
        raise TypeError(f"cannot time job {job.key}")
    return _cpu() - c


def estimate_build(
    size: str, workers: Sequence[int] = (1, 2), probe_steps: tuple[int, int] = (2, 8), seed: int = 0
) -> dict[str, Any]:
    """Estimated wall seconds of ``build_zoo(size)`` on idle cores for each worker count.

    Returns:
        ``{"jobs": {key: {"steps", "threads", "fixed_s", "per_step_s", "total_s"}}, "worker_start_s",
        "cpu_s": total CPU seconds, "wall_s": {workers: seconds}}``; a job's seconds are wall seconds
        on its ``threads`` idle cores.
    """
    import torch

    from testbed.zoo import plan_jobs

    torch.set_num_threads(1)
    rec = size_recipe(size)
    chosen = tasks_for(size)
    k1, k2 = probe_steps
    with tempfile.TemporaryDirectory(prefix="loom-estimate-") as tmp:
        jobs = plan_jobs(rec, chosen, [t for t in chosen if t.transfer], Path(tmp), seed)
        _timed(jobs[0], 1)  # warm up lazy imports before timing anything
        costs: dict[str, dict[str, float]] = {}
        for job in jobs:  # bases first (LoRA jobs need a saved base: the short pre-training leaves one)
            # a job on n threads: CPU seconds / n approximates its wall time on n idle cores (a 2-thread job measured 1.45-1.8x)
            a, b = _timed(job, k1) / job.threads, _timed(job, k2) / job.threads
            per = max(0.0, (b - a) / (k2 - k1))
            fixed = max(0.0, a - per * k1)
            costs[job.key] = {"steps": job.total, "threads": job.threads, "fixed_s": fixed, "per_step_s": per, "total_s": fixed + per * job.total}
    start = worker_start_seconds()
    seconds = {k: c["total_s"] for k, c in costs.items()}
    return {
        "jobs": costs,
        "worker_start_s": start,
        "cpu_s": sum(seconds[j.key] * j.threads for j in jobs) + start,
        "wall_s": {w: start + simulate(jobs, seconds, w) for w in workers},
    }
