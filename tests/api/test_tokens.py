"""Failed authentication is throttled per client (429 with Retry-After); tokens are listed and revoked through the
API and the CLI (both databases for the API)."""

from __future__ import annotations

import io
import json

import pytest

from hub.core.errors import RateLimitedError
from hub.services.auth_throttle import AuthThrottle
from tests.api.util import assert_error


def test_failed_authentications_are_throttled_with_retry_after(make_api):
    api = make_api(auth_fail_limit=5, auth_fail_window_s=60)
    c = api.client
    for _ in range(5):
        assert_error(c.get("/api/v1/whoami", headers={"Authorization": "Bearer loom_wrong"}), 401, "unauthenticated")
    r = c.get("/api/v1/whoami", headers={"Authorization": "Bearer loom_wrong"})
    assert_error(r, 429, "rate_limited", "too many failed authentications")
    assert 1 <= int(r.headers["Retry-After"]) <= 60
    assert c.get("/api/v1/whoami", headers=api.alice).status_code == 429  # a valid token waits too (same client)
    assert c.get("/api/v1/adapters").status_code == 200  # anonymous reads are not authentication attempts


def test_the_throttle_counts_per_client_in_a_sliding_window():
    now = [0.0]
    t = AuthThrottle(limit=3, window_s=10, clock=lambda: now[0])
    for _ in range(3):
        t.check("1.2.3.4")
        t.failed("1.2.3.4")
    with pytest.raises(RateLimitedError) as e:
        t.check("1.2.3.4")
    assert e.value.details["retry_after"] == 10
    t.check("5.6.7.8")  # another client is not affected
    now[0] = 10.5  # the failures left the window
    t.check("1.2.3.4")
    off = AuthThrottle(limit=0, window_s=10)
    for _ in range(100):
        off.failed("x")
    off.check("x")


def test_list_and_revoke_tokens(api):
    c = api.client
    items = c.get("/api/v1/tokens", headers=api.alice).json()["items"]
    assert len(items) == 1 and items[0]["prefix"].startswith("loom_") and items[0]["revoked_at"] is None
    assert "token" not in items[0] and "token_hash" not in items[0]
    _, second = api.hub.users.create_token("alice", label="laptop")
    other = {"Authorization": f"Bearer {second}"}
    items = c.get("/api/v1/tokens", headers=other).json()["items"]
    assert [t["label"] for t in items] == [None, "laptop"]
    bob_ids = [t["id"] for t in c.get("/api/v1/tokens", headers=api.bob).json()["items"]]
    assert_error(c.delete(f"/api/v1/tokens/{bob_ids[0]}", headers=api.alice), 404, "not_found")  # not alice's
    assert c.get("/api/v1/whoami", headers=api.bob).json() == {"user": "bob"}
    r = c.delete(f"/api/v1/tokens/{items[0]['id']}", headers=other)
    assert r.status_code == 200 and r.json()["revoked_at"] is not None
    assert_error(c.get("/api/v1/whoami", headers=api.alice), 401, "unauthenticated")  # revoked: stops at once
    assert c.get("/api/v1/whoami", headers=other).json() == {"user": "alice"}
    assert_error(c.get("/api/v1/tokens"), 401, "unauthenticated")
    assert_error(c.delete("/api/v1/tokens/99999", headers=other), 404, "not_found")


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_token_ls_and_revoke_in_the_cli(make_hub, monkeypatch, capsys):
    from hub.api import create_app
    from hub.cli import main
    from tests.helpers import serve_in_thread

    hub = make_hub()
    _, t1 = hub.users.create_token("alice", label="ci")
    _, t2 = hub.users.create_token("alice", label="laptop")
    with serve_in_thread(create_app(hub=hub, warm_index=False)) as url:
        monkeypatch.setenv("LOOM_SERVER_URL", url)
        capsys.readouterr()
        assert main(["--token", t2, "token", "ls", "--json"]) == 0
        items = json.loads(capsys.readouterr().out)
        assert [t["label"] for t in items] == ["ci", "laptop"]
        assert main(["--token", t2, "token", "revoke", str(items[0]["id"])]) == 0
        assert f"revoked token {items[0]['id']}" in capsys.readouterr().out
        assert main(["--token", t1, "token", "ls"]) == 1  # the revoked token no longer works
        err = capsys.readouterr().err
        assert "not valid" in err and len(err.strip().splitlines()) == 1
        assert main(["--token", t2, "token", "ls"]) == 0
        assert "laptop" in capsys.readouterr().out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_token_ls_keeps_prefix_label_and_times_whole_at_80_columns(make_hub, monkeypatch, capsys):
    from rich.console import Console

    from hub.api import create_app
    from hub.cli import common, main
    from tests.helpers import serve_in_thread

    hub = make_hub()
    _, t1 = hub.users.create_token("alice", label="the laptop at home")
    _, t2 = hub.users.create_token("alice", label="ci")
    with serve_in_thread(create_app(hub=hub, warm_index=False)) as url:
        monkeypatch.setenv("LOOM_SERVER_URL", url)
        assert main(["--token", t1, "token", "ls", "--json"]) == 0  # t1 is now used
        assert main(["--token", t2, "token", "revoke", str(json.loads(capsys.readouterr().out)[0]["id"])]) == 0
        capsys.readouterr()
        assert main(["--token", t2, "token", "ls", "--json"]) == 0
        items = json.loads(capsys.readouterr().out)
        for width, created in ((80, False), (120, True)):
            monkeypatch.setattr(common, "console", Console(width=width, record=True, file=io.StringIO()))
            assert main(["--token", t2, "token", "ls"]) == 0
            text = common.console.export_text()
            assert all(len(line) <= width for line in text.splitlines()), text
            # it cut the prefix and every time to its date ("2026-12-08T…")
            first = items[0]
            for stamp in ("last_used_at", "revoked_at", *(["created_at"] if created else [])):
                assert first[stamp] is not None and first[stamp][:16].replace("T", " ") in text, (stamp, text)
            assert f"{first['prefix']}..." in text and f"{items[1]['prefix']}..." in text
            assert {"the", "laptop", "at", "home"} <= set(text.split()), text  # the label may wrap, never cut
