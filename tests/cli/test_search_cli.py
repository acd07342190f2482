"""``loom search`` marks weak matches and says when no adapter fits (against a real server)."""

from __future__ import annotations

import json

from hub.cli import main
from tests.services.util import files_of


def test_cli_search_shows_weak_matches(server, capsys, monkeypatch, adapter_dirs):
    url, hub = server
    monkeypatch.setenv("LOOM_SERVER_URL", url)
    monkeypatch.setenv("COLUMNS", "200")
    alice = hub.users.ensure_user("alice")
    hub.publisher.publish(alice, "alice/sql", files_of(adapter_dirs[0]),
                          description="Translates English questions into SQL database queries.", tags=["code"])

    def run(*args):
        capsys.readouterr()
        rc = main(list(args))
        return rc, capsys.readouterr().out

    rc, out = run("search", "how do I repot an orchid")
    assert rc == 0 and "alice/sql" in out and "weak" in out
    assert "No good match" in out and "threshold 0.30" in out
    rc, out = run("search", "turn my questions into database queries")
    assert rc == 0 and "alice/sql" in out and "weak" not in out and "No good match" not in out
    rc, out = run("search", "how do I repot an orchid", "--json")
    res = json.loads(out)
    assert res["match"] == "weak" and res["results"][0]["match"] == "weak"
