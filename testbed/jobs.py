"""The zoo's training jobs and a small scheduler that runs them on one or more worker processes.

A build is a graph of jobs: pre-train each base, then train one LoRA per task on it (each LoRA job
needs its base's pre-training). Every job is seeded on its own and runs on a fixed number of intra-op
threads (its ``threads``, one unless its recipe says otherwise), so its weights are the same bytes
whichever process runs it and in whatever order: ``workers=2`` builds the same zoo as ``workers=1``,
about twice as fast on two idle cores. A job of ``threads=n`` (a base recipe's ``threads``) holds
``min(n, workers)`` workers while it runs: for a long pre-training that every LoRA waits for. Measured
on 2 cores: a 4M base pre-trained 1.45-1.8x faster on two threads; the full recipe's 2M bases run on
one thread each, side by side, which uses the cores better.

Worker processes are started with ``spawn`` (never ``fork``: torch's thread pools do not survive a
fork) and report their steps through a queue, so progress bars move as in a one-process build.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hub.core.errors import InvalidInputError

#: ``LOOM_TESTBED_WORKERS`` overrides the default worker count (``min(4, CPU count)``)
WORKERS_ENV = "LOOM_TESTBED_WORKERS"
_QUEUE: Any = None  # set in worker processes by _init_worker


@dataclass(frozen=True)
class Job:
    """One unit of training.

    Attributes:
        key: unique name (``"base:A"``, ``"lora:A:upper"``).
        phase: the progress bar it advances; ``total`` its steps.
        fn, args: a module-level function (picklable) and its arguments; it receives ``progress``.
        after: keys of jobs that must finish first.
        threads: intra-op threads the job uses (its function sets them); it holds that many workers.
    """

    key: str
    phase: str
    total: int
    fn: Callable[..., Any]
    args: tuple[Any, ...]
    after: tuple[str, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    threads: int = 1

    def slots(self, workers: int) -> int:
        """Workers this job holds while it runs."""
        return max(1, min(self.threads, workers))


def _startable(pending: Sequence[Job], is_done: Callable[[str], bool], free: int, workers: int) -> list[Job]:
    """The jobs to start now, in list order: dependencies done and enough free workers (a job that
    does not fit is passed over, so a later one-worker job may use a free worker)."""
    out = []
    for j in pending:
        if all(is_done(a) for a in j.after) and j.slots(workers) <= free:
            out.append(j)
            free -= j.slots(workers)
    return out


def default_workers() -> int:
    """``LOOM_TESTBED_WORKERS`` if set, else ``min(4, os.cpu_count())`` (each worker holds its own
    torch + transformers + peft, a few hundred MB)."""
    raw = os.environ.get(WORKERS_ENV)
    if raw:
        try:
            n = int(raw)
        except ValueError:
            raise InvalidInputError(f"{WORKERS_ENV} must be an integer, got {raw!r}") from None
        if n < 1:
            raise InvalidInputError(f"{WORKERS_ENV} must be >= 1, got {n}")
        return n
    return max(1, min(4, os.cpu_count() or 1))


def pretrain_job(recipe: Any, out_dir: Path, seed: int, progress: Any = None) -> dict[str, Any]:
    """Pre-train one base; returns its final loss and parameter count."""
    from testbed.models import count_parameters
    from testbed.train import load_base, pretrain_base

    res = pretrain_base(recipe, out_dir, seed=seed, progress=progress)
    return {**res, "params": count_parameters(load_base(out_dir))}


def copy_base_job(src: Path, out_dir: Path, params: int, progress: Any = None) -> dict[str, Any]:
    """Reuse a base pre-trained by another zoo build (same recipe, seed, trainer): copy its folder."""
    import shutil

    shutil.copytree(src, out_dir)
    if progress is not None:
        progress(1, 1)
    return {"params": params, "reused": str(src)}


def lora_job(
    base_dir: Path,
    base_id: str,
    task: str,
    recipe: Any,
    out_dir: Path,
    seed: int,
    steps: int,
    checkpoints: Sequence[float],
    progress: Any = None,
) -> dict[str, Any]:
    """Train one task's LoRA on a base (see :func:`testbed.train.train_lora`)."""
    from testbed.tasks import get_task
    from testbed.train import train_lora

    return train_lora(
        base_dir, base_id, get_task(task), recipe, out_dir, seed=seed, steps=steps,
        checkpoints=checkpoints, progress=progress,
    )


def _init_worker(queue: Any) -> None:
    global _QUEUE
    _QUEUE = queue
    import torch

    torch.set_num_threads(1)


def _run_in_worker(job: Job) -> Any:
    def progress(done: int, _total: int) -> None:
        _QUEUE.put((job.key, done))

    return job.fn(*job.args, progress=progress, **job.kwargs)


def run_jobs(
    jobs: Sequence[Job],
    workers: int,
    progress: Callable[[str, int, int], None] | None = None,
) -> tuple[dict[str, Any], dict[str, float]]:
    """Run ``jobs`` respecting ``after``; returns ``({key: result}, {phase: wall seconds})``.

    A phase's time runs from its first job's start to its last job's end (phases overlap when
    ``workers > 1``). Jobs start in list order as soon as their dependencies are done and enough
    workers are free.
    """
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    keys = [j.key for j in jobs]
    if len(set(keys)) != len(keys):
        raise InvalidInputError("job keys must be unique")
    totals: dict[str, int] = {}
    for j in jobs:
        totals[j.phase] = totals.get(j.phase, 0) + j.total
    done_steps: dict[str, int] = {}
    spans: dict[str, list[float]] = {}

    def advance(key: str, done: int) -> None:
        phase = by_key[key].phase
        done_steps[key] = done
        if progress:
            n = sum(v for k, v in done_steps.items() if by_key[k].phase == phase)
            progress(phase, n, totals[phase])

    def started(job: Job) -> None:
        spans.setdefault(job.phase, [time.perf_counter(), 0.0])

    def finished(job: Job) -> None:
        spans[job.phase][1] = time.perf_counter()
        advance(job.key, job.total)

    by_key = {j.key: j for j in jobs}
    results: dict[str, Any] = {}
    if workers == 1:
        pending = list(jobs)
        while pending:
            job = next(j for j in pending if all(a in results for a in j.after))
            pending.remove(job)
            started(job)
            results[job.key] = job.fn(*job.args, progress=lambda d, _n, k=job.key: advance(k, d), **job.kwargs)
            finished(job)
        return results, {p: s[1] - s[0] for p, s in spans.items()}
    return _run_parallel(jobs, workers, results, advance, started, finished, spans)


def _run_parallel(
    jobs: Sequence[Job],
    workers: int,
    results: dict[str, Any],
    advance: Callable[[str, int], None],
    started: Callable[[Job], None],
    finished: Callable[[Job], None],
    spans: dict[str, list[float]],
) -> tuple[dict[str, Any], dict[str, float]]:
    import multiprocessing as mp
    import queue as queue_mod
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    pending = list(jobs)
    running: dict[Any, Job] = {}
    with ProcessPoolExecutor(workers, mp_context=ctx, initializer=_init_worker, initargs=(q,)) as pool:
        try:
            while pending or running:
                free = workers - sum(j.slots(workers) for j in running.values())
                for job in _startable(pending, results.__contains__, free, workers):
                    pending.remove(job)
                    started(job)
                    running[pool.submit(_run_in_worker, job)] = job
                done, _ = wait(list(running), timeout=0.2, return_when=FIRST_COMPLETED)
                while True:
                    try:
                        key, step = q.get_nowait()
                    except queue_mod.Empty:
                        break
                    if key not in results:
                        advance(key, step)
                for fut in done:
                    job = running.pop(fut)
                    results[job.key] = fut.result()  # re-raises a worker's error here
                    finished(job)
        except BaseException:
            for fut in running:
                fut.cancel()
            raise
        finally:
            q.close()
    return results, {p: s[1] - s[0] for p, s in spans.items()}


def simulate(jobs: Sequence[Job], seconds: Mapping[str, float], workers: int) -> float:
    """Wall seconds :func:`run_jobs` would take if job ``key`` ran ``seconds[key]`` on idle cores (for a
    job of ``threads=n``: its wall seconds on ``n`` cores).

    Same policy as :func:`run_jobs`: whenever a job ends, start the jobs (in list order) whose
    dependencies are done and that fit in the free workers.
    """
    if workers < 1:
        raise InvalidInputError(f"workers must be >= 1, got {workers}")
    now = 0.0
    end: dict[str, float] = {}
    running: dict[str, float] = {}  # key -> end time
    by_key = {j.key: j for j in jobs}
    pending = list(jobs)
    while pending or running:
        free = workers - sum(by_key[k].slots(workers) for k in running)
        ended = {k for k, t in end.items() if t <= now}
        for job in _startable(pending, ended.__contains__, free, workers):
            pending.remove(job)
            # fewer workers than threads: the threads share the cores it holds
            running[job.key] = end[job.key] = now + seconds[job.key] * job.threads / job.slots(workers)
        if not running:
            raise InvalidInputError("job dependencies cannot be met (a cycle or an unknown key)")
        now = min(running.values())
        running = {k: t for k, t in running.items() if t > now}
    return max(end.values(), default=0.0)
