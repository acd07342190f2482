"""How the Loom Serve deployment routes its calls: Serve's default router, except for ``cancel`` (imports Ray).

Serve's default (power of two choices among the replicas holding a call's ``multiplexed_model_id``, the less busy
first) sends every generation call where it would go anyway. A ``cancel`` by request id has to reach the ONE
replica that runs that request, and the default cannot know which: when two replicas hold the request's key it
picks the idle one, every time (the busy one runs the request), so the gateway's cancel missed whenever a key was
on several replicas (seen in CI: a stream cancelled by id ran on to its end). This router sends a ``cancel`` to a
replica its caller has not tried yet (``tried``: the replicas that answered "not here"), those holding the
request's key (``key``) first, so the gateway's loop reaches every replica at most once.
"""

from __future__ import annotations

from typing import Any

# the default router Serve names in RequestRouterConfig (the public module exports only its base class and mixins)
from ray.serve._private.request_router import PowerOfTwoChoicesRequestRouter
from ray.serve.request_router import PendingRequest, RequestRouter, RunningReplica

#: the replica method routed by ``tried``/``key`` rather than by load
CANCEL_METHOD = "cancel"


def _is_cancel(metadata: Any) -> bool:
    return metadata is not None and getattr(metadata, "call_method", None) == CANCEL_METHOD


class LoomRequestRouter(PowerOfTwoChoicesRequestRouter):
    """Power of two choices for generation; for ``cancel(request_id, key=..., tried=...)`` the untried replicas
    holding ``key``, then the other untried ones, then (nothing left) any, which answers "not here" again."""

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None) -> list[list[RunningReplica]]:
        if pending_request is None or not _is_cancel(pending_request.metadata):
            return await super().choose_replicas(candidate_replicas, pending_request)
        tried = set(pending_request.kwargs.get("tried") or ())
        key = pending_request.kwargs.get("key")
        untried = [r for r in candidate_replicas if r.replica_id.unique_id not in tried]
        holders = [r for r in untried if key and key in r.multiplexed_model_ids]
        others = [r for r in untried if r not in holders]
        # one replica per rank: Serve takes the least busy of a rank, and the order here is the point
        return [[r] for r in holders + others] or [list(candidate_replicas)]

    def _fulfill_next_pending_request(self, replica: RunningReplica, request_metadata: Any = None) -> None:
        # a replica chosen for a cancel goes to that cancel alone (FIFO routing would hand it to the oldest
        # waiting call with the same model id, and the cancel to whichever replica came next)
        if _is_cancel(request_metadata):
            RequestRouter._fulfill_next_pending_request(self, replica, request_metadata)
        else:
            super()._fulfill_next_pending_request(replica, request_metadata)
