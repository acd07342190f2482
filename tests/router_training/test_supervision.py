"""Worker supervision (#19.4) with a real ``kill -9``: ``loom serve`` runs the API and a supervised worker; the
worker is killed in the middle of a router training. The supervisor replaces it, the job goes back to the queue
and runs again on the new worker (attempt 2), ``/healthz`` says degraded while the worker is down and ok again
after, and ``/metrics`` counts the restart."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import httpx
import pytest

from hub.services.router_training import RouterTrainRequest
from tests.helpers import free_port
from tests.router_training.conftest import EXPERTS


def _until(pred, what: str, timeout: float = 180.0, every: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(every)


@pytest.mark.parametrize("db_kind", ["sqlite"])
def test_a_killed_worker_is_replaced_and_its_job_runs_again(rhub, tmp_path):
    alice = rhub.users.ensure_user("alice")
    job, _ = rhub.routers.submit(alice, RouterTrainRequest(preset="meteora", experts=tuple(EXPERTS),
                                                           name="alice/slow", steps=20_000, params={"k": 1}))
    port = free_port()
    env = {**os.environ, "LOOM_DATA_DIR": str(rhub.settings.data_dir), "HF_HUB_OFFLINE": "1",
           "LOOM_DATABASE_URL": rhub.settings.resolved_database_url, "LOOM_WORKERS": "1",
           "LOOM_SHORT_WORKERS": "0", "TOKENIZERS_PARALLELISM": "false"}
    log = (tmp_path / "serve.log").open("wb")
    proc = subprocess.Popen([sys.executable, "-m", "hub.cli", "serve", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"

    def health():
        try:
            r = httpx.get(f"{url}/healthz", timeout=5)
        except httpx.HTTPError:
            return None
        return r.json() if r.status_code == 200 else None

    try:
        first = _until(lambda: (j := rhub.jobs.get(job.id, alice.id)).status == "running" and j, "the job to run")
        assert first.attempts == 1
        killed = int(first.worker.rsplit(":", 1)[1])
        _until(lambda: (h := health()) and h["status"] == "ok" and h["workers"]["up"] == 1, "a healthy hub")
        os.kill(killed, signal.SIGKILL)
        seen = []
        again = _until(lambda: (seen.append(health()) or True) and (j := rhub.jobs.get(job.id, alice.id)).status
                       == "running" and j.attempts == 2 and j, "the job to run again")
        assert again.worker != first.worker
        assert int(again.worker.rsplit(":", 1)[1]) != killed
        assert any(h and h["status"] == "degraded" for h in seen), seen  # while the worker was down
        assert any("re-queued: its worker" in line and "(attempt 1 of 3)" in line for line in again.log), again.log
        h = _until(lambda: (h := health()) and h["status"] == "ok" and h, "the hub to be healthy again")
        assert h["workers"]["restarts"] == 1 and h["workers"]["up"] == 1
        dead = rhub.workers.get(first.worker)
        assert dead is not None and dead.status == "dead"
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert "loom_worker_restarts 1.0" in metrics
        assert 'loom_workers{lane="all",state="up"} 1.0' in metrics
        rhub.jobs.cancel(job.id, alice.id)
        _until(lambda: rhub.jobs.get(job.id, alice.id).status == "cancelled", "the job to stop")
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()
    print((tmp_path / "serve.log").read_text()[-3000:])
