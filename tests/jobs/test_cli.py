"""``loom compose`` and ``loom jobs`` against a real HTTP server, with a worker thread running jobs."""

from __future__ import annotations

import json
import threading

import pytest

from hub.cli import main
from hub.jobs.worker import Worker
from tests.cli.conftest import server  # noqa: F401 - the real uvicorn server fixture
from tests.services.util import files_of


@pytest.fixture
def published(server, adapter_dirs):  # noqa: F811
    url, hub = server
    alice = hub.users.ensure_user("alice")
    hub.publisher.publish(alice, "alice/a", files_of(adapter_dirs[0]), description="upper case")
    hub.publisher.publish(alice, "alice/b", files_of(adapter_dirs[1]), description="reverse")
    _, token = hub.users.create_token("alice")
    return url, hub, token


def test_compose_waits_with_progress_and_jobs_lists_it(published, capsys):
    url, hub, token = published
    stop = threading.Event()
    t = threading.Thread(target=Worker(hub.queue, hub.handlers, "cli-test").run_forever, kwargs={"poll": 0.1, "should_stop": stop.is_set},
                         daemon=True)
    t.start()
    try:
        rc = main(["--server", url, "--token", token, "compose", "--from", "alice/a", "--from", "alice/b@1",
                   "-m", "cat", "-w", "1", "-w", "0.25", "--name", "alice/ab"])
    finally:
        stop.set()
        t.join(10)
    out = capsys.readouterr()
    assert rc == 0, out.err
    assert "published alice/ab@1 (cat)" in out.out
    assert "loading alice/a@1" in out.err or "published alice/ab@1" in out.err  # the live log was followed
    assert main(["--server", url, "--token", token, "jobs", "--json"]) == 0
    jobs = json.loads(capsys.readouterr().out)
    assert [j["status"] for j in jobs] == ["succeeded"] and jobs[0]["result"]["adapter"] == "alice/ab"


def test_compose_errors_exit_1_with_the_message(published, capsys):
    url, _, token = published
    rc = main(["--server", url, "--token", token, "compose", "--from", "alice/a", "-m", "nope"])
    err = capsys.readouterr().err
    assert rc == 1 and "unknown merge method 'nope'" in err and "cat" in err
    rc = main(["--server", url, "compose", "--from", "alice/a", "-m", "cat"])  # no token
    assert rc == 1 and "token" in capsys.readouterr().err.lower()


def test_the_jobs_table_keeps_ids_status_and_progress_whole_at_80_columns():
    from rich.console import Console

    from hub.cli.jobs import jobs_table

    jobs = [{"id": "0123456789abcdef", "kind": "train_generator", "status": "succeeded", "position": None,
             "progress": 1.0, "result_name": "demo/a-rather-long-adapter-name-qwen2", "message": "done",
             "created_at": "2026-12-07T11:00:00"} for _ in range(2)]
    console = Console(width=80, record=True)
    console.print(jobs_table(jobs, 80))
    text = console.export_text()
    assert all(len(line) <= 80 for line in text.splitlines())
    assert "0123456789ab" in text and "succeeded" in text and "100%" in text and "12-07 11:00" in text, text
