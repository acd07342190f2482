"""``loom serve`` (API + worker processes) and ``loom worker``, as real processes on a fresh data directory."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from hub.cli import main
from tests.helpers import free_port, wait_healthy

LOOM = Path(sys.executable).with_name("loom")


@pytest.fixture
def local_env(tmp_path, monkeypatch):
    """A fresh data directory (SQLite inside) for this process's local commands and for child processes."""
    data = tmp_path / "data"
    for var in ("LOOM_DATABASE_URL", "LOOM_SERVER_URL", "LOOM_TOKEN", "LOOM_WORKERS"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("LOOM_DATA_DIR", str(data))
    return {**os.environ, "LOOM_DATA_DIR": str(data)}


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGINT)
    try:  # generous: a busy 2-core CI machine runs a whole test suite beside it
        return proc.wait(150)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait()


def loom(capsys, *args: str) -> tuple[int, str, str]:
    capsys.readouterr()
    rc = main(list(args))
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.mark.slow
def test_serve_and_worker_run_a_composition_end_to_end(local_env, adapter_dirs, capsys, tmp_path):
    """`loom serve --workers 0` answers the API; the job it queues is run by a separate `loom worker`."""
    rc, out, err = loom(capsys, "token", "create", "alice", "--json")
    assert rc == 0, err
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    g = ["--server", url, "--token", json.loads(out)["token"]]
    log = tmp_path / "serve.log"
    server = subprocess.Popen([str(LOOM), "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "0"],
                              env=local_env, stdout=log.open("w"), stderr=subprocess.STDOUT)
    worker = subprocess.Popen([str(LOOM), "worker", "--poll", "0.1"], env=local_env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        wait_healthy(url, server)
        for d, name in zip(adapter_dirs[:2], ("alice/a", "alice/b"), strict=True):
            rc, _, err = loom(capsys, *g, "publish", str(d), "--name", name, "--description", f"adapter {name}")
            assert rc == 0, err
        rc, out, err = loom(capsys, *g, "compose", "--from", "alice/a", "--from", "alice/b", "-m", "cat",
                            "--name", "alice/ab")
        assert rc == 0, err + log.read_text()[-3000:]
        assert "published alice/ab@1 (cat)" in out
    finally:
        worker_code, server_code = stop(worker), stop(server)
    worker_out = worker.stdout.read()
    assert worker_code == 0 and "worker started" in worker_out, worker_out[-3000:]
    assert server_code == 0, log.read_text()[-3000:]
