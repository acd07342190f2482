"""Find LoRA adapters on the Hub and plan re-syncs by comparing upstream commit shas."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hub.core.errors import InvalidInputError, LoomError
from hub.hf_sync.errors import CallContext
from hub.hf_sync.fetch import has_token
from hub.hf_sync.refs import validate_repo_id
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy, call_hub

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)

#: listing fields asked for with ``expand`` (the Hub returns no ``sha`` in a plain listing).
_EXPAND = ["sha", "private", "gated", "tags", "lastModified", "library_name"]
PEFT_FILTER = "peft"


@dataclass(frozen=True)
class HubAdapterRef:
    """A search hit: repo id and the commit sha of its default branch at listing time."""

    repo_id: str
    sha: str | None
    private: bool = False
    gated: bool | str = False
    tags: tuple[str, ...] = ()
    last_modified: str | None = None


def adapter_filters(base_model: str | None = None, extra: Sequence[str] = ()) -> list[str]:
    """The Hub ``filter`` list: the PEFT library tag, ``base_model:adapter:<id>``, then ``extra``."""
    filters = [PEFT_FILTER]
    if base_model:
        filters.append(f"base_model:adapter:{validate_repo_id(base_model)}")
    return filters + [f for f in extra if f not in filters]


def search_adapters(
    api: HfApi,
    search: str | None = None,
    author: str | None = None,
    base_model: str | None = None,
    limit: int = 50,
    *,
    filters: Sequence[str] = (),
    policy: RetryPolicy = DEFAULT_POLICY,
) -> list[HubAdapterRef]:
    """List PEFT adapters on the Hub, newest listing first as the Hub returns them.

    Args:
        search: substring of the repo id.
        author: user or organisation.
        base_model: only adapters of this base model (``base_model:adapter:<id>`` filter).
        limit: at most this many results (1..1000).
        filters: extra Hub tag filters (all must match).

    Raises:
        InvalidInputError: a bad limit or base model id.
        UpstreamError / AuthenticationError: the Hub refused or failed.
    """
    if not 1 <= limit <= 1000:
        raise InvalidInputError(f"limit must be in [1, 1000], got {limit}")
    ctx = CallContext("searching", None, None, has_token(api))

    def run() -> list[Any]:
        return list(api.list_models(filter=adapter_filters(base_model, filters), author=author or None,
                                    search=search or None, limit=limit, expand=_EXPAND))  # type: ignore[arg-type]

    models = call_hub(run, ctx=ctx, policy=policy)
    out = []
    for m in models:
        modified = getattr(m, "last_modified", None)
        out.append(HubAdapterRef(
            repo_id=m.id, sha=m.sha, private=bool(m.private), gated=m.gated or False,
            tags=tuple(m.tags or ()), last_modified=modified.isoformat() if modified else None))
    return out


def upstream_sha(api: HfApi, repo_id: str, revision: str = "main", *,
                 policy: RetryPolicy = DEFAULT_POLICY) -> str:
    """The commit sha ``revision`` (branch, tag or sha) points at now.

    Raises:
        NotFoundError, AuthenticationError, PermissionDeniedError, UpstreamError: see :func:`fetch_adapter`.
    """
    validate_repo_id(repo_id)
    ctx = CallContext("checking", repo_id, revision, has_token(api))
    info = call_hub(api.model_info, repo_id, revision=revision, ctx=ctx, policy=policy)
    return str(info.sha)


@dataclass(frozen=True)
class SyncUpdate:
    """A repo whose upstream sha differs from the one Loom has."""

    repo_id: str
    known_sha: str | None
    upstream_sha: str
    revision: str = "main"


@dataclass
class SyncPlan:
    """The outcome of :func:`plan_sync`: repos to re-import, repos unchanged, repos that failed."""

    updates: list[SyncUpdate] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, LoomError] = field(default_factory=dict)


def plan_sync(
    api: HfApi,
    known: Mapping[str, str | None],
    *,
    revisions: Mapping[str, str] | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> SyncPlan:
    """Compare the shas Loom holds with upstream; only changed repos become updates (no duplicates).

    Args:
        known: repo id -> the newest sha Loom imported (None: never imported).
        revisions: repo id -> the branch or tag it tracks (default ``main``).

    Returns:
        A :class:`SyncPlan`. One failing repo (deleted, made private, rate limited) is recorded in
        ``errors`` and does not stop the others.
    """
    plan = SyncPlan()
    for repo_id, sha in known.items():
        revision = (revisions or {}).get(repo_id, "main")
        try:
            now = upstream_sha(api, repo_id, revision, policy=policy)
        except LoomError as e:
            log.warning("sync check of %s failed: %s", repo_id, e)
            plan.errors[repo_id] = e
            continue
        if now == sha:
            plan.unchanged.append(repo_id)
        else:
            plan.updates.append(SyncUpdate(repo_id, sha, now, revision))
    return plan
