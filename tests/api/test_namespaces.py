"""A namespace belongs to the user of the same name: every way of publishing refuses another namespace (403
naming it) before any work, and a taken private name is not revealed (both databases)."""

from __future__ import annotations

import pytest

from hub.core.errors import ConflictError
from tests.api.util import assert_error, upload
from tests.services.util import files_of


def test_upload_into_another_namespace_is_403_naming_it(api, adapter_dirs):
    c = api.client
    err = assert_error(upload(c, api.bob, adapter_dirs[0], "alice/impostor"), 403, "forbidden", "namespace alice")
    assert err["details"]["namespace"] == "alice" and err["details"]["field"] == "name"
    assert c.get("/api/v1/adapters", params={"namespace": "alice"}).json()["total"] == 0
    assert c.get("/api/v1/adapters/alice/impostor").status_code == 404
    assert upload(c, api.bob, adapter_dirs[0], "bob/mine").status_code == 201


@pytest.mark.parametrize(("path", "body"), [
    ("/api/v1/compositions", {"sources": ["bob/mine"], "method": "linear", "name": "alice/merged"}),
    ("/api/v1/routers", {"preset": "meteora", "experts": ["bob/mine", "bob/mine2"], "name": "alice/router"}),
    ("/api/v1/generators", {"method": "sg_lora", "base_model": "loom-test/pico-llama", "name": "alice/gen"}),
    ("/api/v1/generations", {"generator": "bob/gen", "task": "shout", "name": "alice/generated"}),
    ("/api/v1/transfers", {"source": "bob/mine", "target_base": "x/y", "name": "alice/moved"}),
])
def test_job_outputs_into_another_namespace_are_403_at_submit(api, adapter_dirs, path, body):
    c = api.client
    assert upload(c, api.bob, adapter_dirs[0], "bob/mine").status_code == 201
    assert_error(c.post(path, headers=api.bob, json=body), 403, "forbidden", "namespace alice belongs to alice")
    assert c.get("/api/v1/jobs", headers=api.bob).json() == []  # nothing queued


def test_a_private_name_taken_in_ones_namespace_is_not_revealed(hub, adapter_dirs):
    """A name in alice's namespace held by another user (data from before namespaces were owned): alice gets
    409 "cannot publish to that name", without the name or its owner."""
    from hub.db.models import Adapter

    alice, bob = hub.users.ensure_user("alice"), hub.users.ensure_user("bob")
    hub.publisher.publish(alice, "alice/secret", files_of(adapter_dirs[0]), visibility="private")
    with hub.sessions.begin() as s:
        s.query(Adapter).filter_by(namespace="alice", name="secret").one().owner_id = bob.id
    with pytest.raises(ConflictError) as e:
        hub.publisher.publish(alice, "alice/secret", files_of(adapter_dirs[1]))
    assert "cannot publish to that name" in str(e.value)
    assert "secret" not in str(e.value) and "bob" not in str(e.value) and "secret" not in str(e.value.details)
