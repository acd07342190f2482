"""How the gateway turns what a Serve call raised into Loom's errors (no cluster needed: Ray's own exception types)."""

from __future__ import annotations

import pytest

from hub.core.errors import ClusterUnavailableError, InvalidInputError
from hub.services.inference.ray_gateway import replica_errors


def test_an_error_the_replica_raised_on_purpose_reaches_the_client_as_itself():
    from ray.exceptions import RayTaskError

    cause = InvalidInputError("max_tokens must be in 1..256, got 999", field="max_tokens")
    wrapped = RayTaskError("complete", "Traceback ...", cause)
    with pytest.raises(InvalidInputError) as info:
        with replica_errors():
            raise wrapped
    assert info.value is cause and info.value.details == {"field": "max_tokens"}


@pytest.mark.parametrize("make", ["actor_died", "timeout"])
def test_a_dead_replica_or_a_deadline_is_cluster_unavailable(make):
    from ray.exceptions import ActorDiedError, GetTimeoutError

    exc = ActorDiedError() if make == "actor_died" else GetTimeoutError("timed out after 600 s")
    with pytest.raises(ClusterUnavailableError, match="inference replica failed"):
        with replica_errors():
            raise exc


def test_no_error_passes_through():
    with replica_errors():
        value = 1
    assert value == 1
