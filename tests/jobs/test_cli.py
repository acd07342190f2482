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
