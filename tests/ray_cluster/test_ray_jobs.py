"""Jobs on Ray (``LOOM_JOBS=ray``): the dispatcher runs each queued job as a Ray task on a local cluster.

PostgreSQL holds the queue; every job runs in a Ray worker process with a Hub of its own.
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from tests.ray_cluster import jobkinds

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def hub(tmp_path_factory, pg_database, ray_local):
    from hub.services.container import Hub
    from hub.settings import get_settings

    settings = get_settings(data_dir=tmp_path_factory.mktemp("rayjobs") / "data", database_url=pg_database,
                            jobs="ray", ray_address="local", workers=0)
    with Hub(settings) as h:
        yield h


@pytest.fixture
def dispatcher(hub):
    from hub.services.container import job_dispatcher

    d = job_dispatcher(hub, jobkinds.run_task)
    d.poll = 0.2
    d.start()
    yield d
    d.stop()


def wait_for(hub, job_id: str, until, timeout: float = 90.0):
    deadline = time.monotonic() + timeout
    while True:
        job = hub.queue.get(job_id, check_owner=False)
        if until(job):
            return job
        assert time.monotonic() < deadline, (job.status, job.message, job.log)
        time.sleep(0.2)


def finished(job) -> bool:
    return job.finished


def test_the_container_builds_a_dispatcher_only_for_ray_jobs(hub, tmp_path):
    from hub.services.container import Hub
    from hub.services.ray_jobs import RayJobDispatcher
    from hub.settings import get_settings

    assert isinstance(hub.dispatcher, RayJobDispatcher)
    with Hub(get_settings(data_dir=tmp_path / "d", database_url=hub.settings.database_url), migrate=False) as local:
        assert local.dispatcher is None


def test_each_job_runs_as_its_own_ray_task_with_the_resources_of_its_kind(hub, dispatcher):
    gpu_job, _ = hub.queue.submit("generate", None, {})
    cpu_job, _ = hub.queue.submit("probe_cpu", None, {})
    gpu = wait_for(hub, gpu_job.id, finished)
    cpu = wait_for(hub, cpu_job.id, finished)
    assert gpu.status == cpu.status == "succeeded", (gpu.error, cpu.error)
    assert gpu.result["resources"].get("GPU") == 1.0
    assert "GPU" not in cpu.result["resources"]
    assert gpu.result["pid"] != os.getpid() and cpu.result["pid"] != os.getpid()
    assert hub.queue.get(gpu_job.id, check_owner=False).attempts == 1


def test_a_task_claims_only_the_job_it_was_started_for(hub):
    first, _ = hub.queue.submit("sleep", None, {"seconds": 0})
    second, _ = hub.queue.submit("sleep", None, {"seconds": 0})
    assert hub.queue.claim("w", job_id=second.id).id == second.id  # not the older one
    assert hub.queue.claim("w", job_id=second.id) is None  # no longer queued
    for j in (first, second):
        hub.queue.finish(j.id, "cancelled")


def test_cancel_reaches_a_running_task_that_never_reports(hub, dispatcher):
    job, _ = hub.queue.submit("sleep", None, {"seconds": 120, "quiet": True})
    wait_for(hub, job.id, lambda j: j.status == "running" and any("pid" in line for line in j.log))
    hub.queue.cancel(job.id, None)
    t0 = time.monotonic()
    done = wait_for(hub, job.id, finished, timeout=90)  # generous: the suite runs beside it on 2 cores
    assert done.status == "cancelled", (done.message, done.log)
    assert time.monotonic() - t0 < 90  # the task was interrupted, not left to sleep 120 s


def _pid(job) -> int:
    return int(next(line for line in job.log if "pid " in line).rsplit("pid ", 1)[1])


def test_a_killed_worker_is_retried_and_the_job_succeeds(hub, dispatcher):
    job, _ = hub.queue.submit("sleep", None, {"seconds": 3})
    running = wait_for(hub, job.id, lambda j: j.status == "running" and any("pid " in line for line in j.log))
    os.kill(_pid(running), signal.SIGKILL)
    done = wait_for(hub, job.id, finished)
    assert done.status == "succeeded", (done.error, done.log)
    assert done.attempts == 2
    assert any("worker lost" in line for line in done.log)
    assert done.result["pid"] != _pid(running)


def test_a_worker_that_always_dies_fails_the_job_with_the_reason_after_the_attempt_limit(hub, dispatcher):
    from hub.jobs.queue import MAX_ATTEMPTS

    job, _ = hub.queue.submit("crash", None, {})
    done = wait_for(hub, job.id, finished, timeout=120)
    assert done.status == "failed"
    assert done.attempts == MAX_ATTEMPTS
    assert done.error["code"] == "worker_lost"
    assert "Worker" in done.error["message"] or "died" in done.error["message"], done.error


def test_queued_jobs_survive_restarts_of_the_dispatcher_and_of_the_ray_cluster(hub):
    import ray

    from hub.services.container import job_dispatcher

    queued, _ = hub.queue.submit("sleep", None, {"seconds": 0})  # nothing runs it: no dispatcher (API down)
    time.sleep(1)
    assert hub.queue.get(queued.id, check_owner=False).status == "queued"
    d = job_dispatcher(hub, jobkinds.run_task)
    d.poll = 0.2
    d.start()  # the API is back
    try:
        assert wait_for(hub, queued.id, finished).status == "succeeded"
        running, _ = hub.queue.submit("sleep", None, {"seconds": 4})
        wait_for(hub, running.id, lambda j: j.status == "running")
        waiting, _ = hub.queue.submit("sleep", None, {"seconds": 0})
        # The cluster goes away, then a new one is up (ray.shutdown while another thread is inside a Ray call
        # ends this process, seen here: the dispatcher is stopped around it); the dispatcher joins the new one.
        d.stop()
        ray.shutdown()
        d.start()
        a = wait_for(hub, running.id, finished, timeout=120)
        b = wait_for(hub, waiting.id, finished, timeout=120)
        assert a.status == b.status == "succeeded", (a.log, b.log)
        assert a.attempts == 2 and any("went away" in line for line in a.log)
    finally:
        d.stop()
