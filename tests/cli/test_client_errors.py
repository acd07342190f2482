"""``hub.client.LoomClient`` raises the server's domain error as itself, for every code the server sends (an
ambiguous job prefix came back as ServerError, a rate limit too), and a server that does not answer is a LoomError
(``ServerUnreachableError``), not httpx's."""

from __future__ import annotations

import pytest

from hub.client import LoomClient, ServerError, ServerUnreachableError
from hub.core import errors as E


def test_every_domain_error_code_is_rebuilt_as_its_class(server):
    url, hub = server
    alice, token = hub.users.create_token("alice")
    ids = [hub.jobs.submit("sleep", alice.id, {"seconds": 0})[0].id for _ in range(40)]
    prefix = next(p for p in "0123456789abcdef" if sum(i.startswith(p) for i in ids) > 1)
    with LoomClient(url, token) as c:
        with pytest.raises(E.AmbiguousError) as e:  # a 409 with code "ambiguous"
            c.job(prefix)
        assert isinstance(e.value, E.ConflictError) and e.value.details["status"] == 409
    with LoomClient(url, "loom_not-a-real-token") as bad:
        with pytest.raises((E.AuthenticationError, E.RateLimitedError)):
            bad.whoami()
    codes = {c.__dict__["code"] for c in vars(E).values()
             if isinstance(c, type) and issubclass(c, E.LoomError) and "code" in c.__dict__}
    from hub.client import _ERRORS

    assert set(_ERRORS) == codes and all(not issubclass(cls, ServerError) for cls in _ERRORS.values())


def test_a_server_that_does_not_answer_is_a_loom_error():
    with LoomClient("http://127.0.0.1:9") as c, pytest.raises(ServerUnreachableError, match="cannot reach"):
        c.health()
    assert issubclass(ServerUnreachableError, E.LoomError)


def test_a_bad_job_status_and_a_missing_version_are_refused(server, tmp_path, adapter_dirs):
    url, hub = server
    _, token = hub.users.create_token("alice")
    with LoomClient(url, token) as c:
        with pytest.raises(E.InvalidInputError, match="status"):
            c.jobs(status="bogus")  # it listed nothing, as if no job had that status
        assert c.jobs(status="failed") == []
        c.publish(adapter_dirs[0], "alice/one")
        assert c.get("alice/one@1")["latest"]["number"] == 1
        with pytest.raises(E.NotFoundError, match="no version 7"):
            c.get("alice/one@7")  # it answered with version 1


def test_an_unknown_filter_is_refused_not_ignored(server, adapter_dirs):
    url, hub = server
    _, token = hub.users.create_token("alice")
    with LoomClient(url, token) as c:
        c.publish(adapter_dirs[0], "alice/one")
        assert c.list(namespace="alice")["total"] == 1 and c.list(owner="bob")["total"] == 0
        with pytest.raises(E.InvalidInputError, match="unknown filter ownr; the filters are base_model, .*owner"):
            c.list(ownr="bob")  # it listed every adapter, as if unfiltered
        with pytest.raises(E.InvalidInputError, match="unknown filters basemodel, tags"):
            c.search("uppercase", basemodel="x", tags="y")
