"""Hub webhooks: verify the shared secret and parse repo-update events into (repo, new sha).

The Hub sends the secret configured on the webhook verbatim in ``X-Webhook-Secret``; it is
compared in constant time. Payloads follow the Hub's webhook v3 format:
``{"event": {"action", "scope"}, "repo": {"type", "name", "headSha"}, "updatedRefs": [...]}``.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hub.core.errors import InvalidInputError

SECRET_HEADER = "X-Webhook-Secret"
DEFAULT_REF = "refs/heads/main"


def verify_webhook(headers: Mapping[str, str], secret: str | None) -> bool:
    """True when ``headers`` carry ``X-Webhook-Secret`` equal to ``secret`` (case-insensitive header name).

    An unset or empty ``secret`` verifies nothing: it returns False, so a deployment without a
    configured secret cannot be triggered by anyone.
    """
    if not secret:
        return False
    given = next((v for k, v in headers.items() if k.lower() == SECRET_HEADER.lower()), None)
    if given is None:
        return False
    return hmac.compare_digest(given.encode("utf-8"), secret.encode("utf-8"))


@dataclass(frozen=True)
class RepoUpdate:
    """A content update of a Hub repo.

    Attributes:
        repo_id: ``org/repo``.
        repo_type: ``model``, ``dataset`` or ``space``.
        sha: the new commit sha of ``ref`` (None when the payload does not say).
        ref: the git ref that moved (``refs/heads/main`` unless the payload names another).
        action: ``create``, ``update``, ``delete`` or ``move``.
    """

    repo_id: str
    repo_type: str
    sha: str | None
    ref: str
    action: str


def parse_webhook_payload(payload: Mapping[str, Any] | bytes | str, *, ref: str = DEFAULT_REF) -> RepoUpdate | None:
    """Parse a Hub webhook payload; return a :class:`RepoUpdate` for model content events, else None.

    Args:
        payload: the JSON body (raw or decoded).
        ref: the ref whose new sha to report when ``updatedRefs`` lists several.

    Returns:
        None for events that are not about a model repo's content (discussions, settings, datasets).

    Raises:
        InvalidInputError: the body is not JSON, or lacks ``event`` / ``repo`` fields.
    """
    if isinstance(payload, bytes | str):
        try:
            payload = json.loads(payload)
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise InvalidInputError(f"webhook payload is not valid JSON: {e}") from None
    if not isinstance(payload, Mapping):
        raise InvalidInputError("webhook payload must be a JSON object")
    event, repo = payload.get("event"), payload.get("repo")
    if not isinstance(event, Mapping) or not isinstance(repo, Mapping):
        raise InvalidInputError("webhook payload needs 'event' and 'repo' objects")
    scope, action = str(event.get("scope", "")), str(event.get("action", ""))
    name, repo_type = repo.get("name"), str(repo.get("type", "model"))
    if not isinstance(name, str) or "/" not in name:
        raise InvalidInputError(f"webhook payload repo.name must be 'org/name', got {name!r}")
    if repo_type != "model" or not (scope == "repo" or scope.startswith("repo.content")):
        return None
    refs = [r for r in payload.get("updatedRefs") or [] if isinstance(r, Mapping)]
    chosen = next((r for r in refs if r.get("ref") == ref), None)
    if chosen is not None:
        sha = chosen.get("newSha")
        moved = ref
    elif refs:
        return None  # only other refs (a PR branch, a tag) moved
    else:
        sha = repo.get("headSha") or repo.get("head_sha")
        moved = ref
    return RepoUpdate(repo_id=name, repo_type=repo_type, sha=str(sha) if sha else None, ref=moved, action=action)
