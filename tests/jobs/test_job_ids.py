"""Job ids as ``loom jobs`` prints them: any unique prefix works in the API and the CLI (#18.5), an ambiguous
prefix is a 409 listing the candidates, and router and generator jobs name what they published."""

from __future__ import annotations

import json
from collections import Counter

import httpx

from hub.cli import main
from tests.cli.conftest import server  # noqa: F401 - the real uvicorn server fixture


def _jobs(hub, owner: str, n: int) -> list[str]:
    user = hub.users.ensure_user(owner)
    return [hub.queue.submit("compose", user.id, {"i": i})[0].id for i in range(n)]


def test_api_accepts_a_unique_prefix_and_409s_an_ambiguous_one(server):  # noqa: F811
    url, hub = server
    ids = _jobs(hub, "alice", 17)  # 17 ids over 16 hex digits: two share their first character
    _jobs(hub, "bob", 3)
    _, token = hub.users.create_token("alice")
    h = {"Authorization": f"Bearer {token}"}
    r = httpx.get(f"{url}/api/v1/jobs/{ids[0][:12]}", headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["id"] == ids[0]
    first, n = Counter(i[0] for i in ids).most_common(1)[0]
    assert n >= 2
    r = httpx.get(f"{url}/api/v1/jobs/{first}", headers=h)
    assert r.status_code == 409, r.text
    err = r.json()["error"]
    assert err["code"] == "ambiguous"
    assert sorted(err["details"]["candidates"]) == sorted(i for i in ids if i.startswith(first))
    assert all(i in err["message"] for i in err["details"]["candidates"])
    # bob's jobs are not candidates for alice, and not reachable by prefix either
    bob_ids = [j.id for j in hub.queue.list(hub.users.ensure_user("bob").id)]
    assert httpx.get(f"{url}/api/v1/jobs/{bob_ids[0][:12]}", headers=h).status_code == 404
    r = httpx.delete(f"{url}/api/v1/jobs/{ids[1][:10]}", headers=h)
    assert r.status_code == 200 and r.json()["id"] == ids[1] and r.json()["status"] == "cancelled"


def test_cli_show_and_cancel_take_the_listed_id_and_results_are_named(server, capsys):  # noqa: F811
    url, hub = server
    [queued, router_job, gen_job] = _jobs(hub, "alice", 3)
    for job_id, result in ((router_job, {"router": "alice/r", "version": 2, "preset": "meteora"}),
                           (gen_job, {"generator": "alice/gen@1", "report": {}})):
        hub.queue.finish(job_id, "succeeded", result=result)
    _, token = hub.users.create_token("alice")
    cli = ["--server", url, "--token", token]
    assert main([*cli, "jobs", "--json"]) == 0
    listed = {j["id"]: j for j in json.loads(capsys.readouterr().out)}
    assert listed[router_job]["result_name"] == "alice/r@2"
    assert listed[gen_job]["result_name"] == "alice/gen@1"
    assert main([*cli, "jobs"]) == 0
    table = capsys.readouterr().out
    assert "alice/r@2" in table and "alice/gen@1" in table and "@\n" not in table and " @ " not in table
    short = queued[:12]  # what `loom jobs` prints
    assert short in table
    assert main([*cli, "jobs", "show", short, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == queued
    assert main([*cli, "jobs", "cancel", short]) == 0
    assert f"{queued}: cancelled" in capsys.readouterr().out
    assert main([*cli, "jobs", "show", "zz"]) == 1
    assert "no job 'zz'" in capsys.readouterr().err
