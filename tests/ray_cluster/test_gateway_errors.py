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


def test_one_watcher_thread_cancels_the_calls_whose_client_left():
    """Open calls share one watcher thread; a set event cancels its own call once, a closed one never."""
    import threading
    import time

    from hub.services.inference.ray_gateway import _WATCHER, CancelForwarder

    class Call:  # what CancelForwarder needs of a Serve response: cancel()
        def __init__(self) -> None:
            self.cancelled = 0

        def cancel(self) -> None:
            self.cancelled += 1

    before, open_before = {t.ident for t in threading.enumerate()}, _WATCHER.watching
    events, calls = [threading.Event() for _ in range(40)], [Call() for _ in range(40)]
    watches = [CancelForwarder(e, c) for e, c in zip(events, calls, strict=True)]
    new = [t for t in threading.enumerate() if t.ident not in before and t.name == "loom-ray-cancel"]
    assert len(new) <= 1 and _WATCHER.watching == open_before + 40  # one thread for the process, not one per call
    watches[1].close()
    events[0].set()
    events[1].set()
    deadline = time.monotonic() + 5
    while calls[0].cancelled == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    time.sleep(0.2)
    assert calls[0].cancelled == 1 and calls[1].cancelled == 0 and all(c.cancelled == 0 for c in calls[2:])
    for w in watches:
        w.close()
    assert calls[0].cancelled == 1 and _WATCHER.watching == open_before
