"""Jobs across real processes: an API server (uvicorn) and a worker process sharing one database.

Checks the two promises of the job system that in-process tests cannot: queued jobs survive an API
restart, and a merge runs in a worker process while the API keeps answering.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from hub.jobs.supervisor import start_workers, stop_workers
from tests.helpers import free_port, wait_healthy


@contextmanager
def api_server(env: dict[str, str], port: int):
    proc = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "hub.api:create_app", "--host", "127.0.0.1",
         "--port", str(port), "--log-level", "warning"],
        env={**os.environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, timeout=90)
        yield url
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.fixture
def env(tmp_path):
    return {"LOOM_DATA_DIR": str(tmp_path / "data"), "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def _upload(url, headers, folder: Path, name: str, description: str):
    files = {
        "adapter_config.json": ("adapter_config.json", (folder / "adapter_config.json").read_bytes()),
        "adapter_model.safetensors": ("adapter_model.safetensors",
                                      (folder / "adapter_model.safetensors").read_bytes()),
    }
    r = httpx.post(f"{url}/api/v1/adapters", headers=headers, files=files,
                   data={"name": name, "description": description}, timeout=60)
    assert r.status_code == 201, r.text


def test_queued_job_survives_api_restart_and_runs_in_a_worker_process(env, adapter_dirs):
    from hub.services.container import Hub
    from hub.settings import get_settings

    with Hub(get_settings(data_dir=Path(env["LOOM_DATA_DIR"]))) as hub:  # migrates the new database
        _, token = hub.users.create_token("alice")
    headers = {"Authorization": f"Bearer {token}"}
    port = free_port()
    with api_server(env, port) as url:
        _upload(url, headers, adapter_dirs[0], "alice/a", "upper case")
        _upload(url, headers, adapter_dirs[1], "alice/b", "reverse")
        r = httpx.post(f"{url}/api/v1/compositions", headers=headers, timeout=30,
                       json={"sources": ["alice/a", "alice/b"], "weights": [0.5, 0.5], "method": "cat",
                             "name": "alice/ab"})
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        assert r.json()["status"] == "queued"
    # The API is gone; nothing ran the job. A new API process still has it queued.
    with api_server(env, port) as url:
        job = httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        assert job["status"] == "queued"
        workers = start_workers(1, env)
        try:
            deadline = time.monotonic() + 120
            while job["status"] in ("queued", "running"):
                assert time.monotonic() < deadline, job
                assert httpx.get(f"{url}/healthz", timeout=5).status_code == 200  # API stays responsive
                time.sleep(0.5)
                job = httpx.get(f"{url}/api/v1/jobs/{job_id}", headers=headers, timeout=10).json()
        finally:
            stop_workers(workers)
        assert job["status"] == "succeeded", (job["error"], job["log"])
        assert job["result"]["adapter"] == "alice/ab"
        lineage = httpx.get(f"{url}/api/v1/adapters/alice/ab", headers=headers, timeout=10)
        assert lineage.status_code == 200
        # Resubmitting the same recipe returns the finished job instead of merging again.
        again = httpx.post(f"{url}/api/v1/compositions", headers=headers, timeout=30,
                           json={"sources": ["alice/a@1", "alice/b@1"], "weights": [0.5, 0.5], "method": "cat",
                                 "name": "alice/ab"}).json()
        assert again["id"] == job_id and again["deduplicated"] is True
