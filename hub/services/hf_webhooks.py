"""Hugging Face Hub webhooks: a content update of a repo Loom tracks queues one ``hf_sync`` job.

A webhook call must carry the configured secret (``X-Webhook-Secret``); the job is deduplicated per
repo and sha, and a worker runs it (:meth:`hub.services.hf_resync.HfResync.run`).
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hub.core.errors import AuthenticationError
from hub.services.hf_resync import KIND

if TYPE_CHECKING:  # pragma: no cover
    from pydantic import SecretStr

    from hub.hf_sync.webhooks import RepoUpdate
    from hub.services.hf_resync import HfResync
    from hub.services.jobs import JobService


@dataclass(frozen=True)
class WebhookOutcome:
    """``queued`` (with the job) or ``ignored`` (with the reason)."""

    status: str
    repo_id: str | None = None
    sha: str | None = None
    job_id: str | None = None
    reason: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class HfWebhooks:
    """Verify Hub webhook calls and queue re-syncs of the repos they name.

    Args:
        secret: the configured webhook secret (None: every call is refused). jobs: where ``hf_sync`` jobs
        are queued. resync: which repos are tracked, at which ref and sha.
    """

    def __init__(self, secret: SecretStr | None, jobs: JobService, resync: HfResync) -> None:
        self.secret, self.jobs, self.resync = secret, jobs, resync

    # -- webhooks -------------------------------------------------------------------------------
    def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        """Verify a Hub webhook and queue a sync of the repo it names, if Loom tracks it.

        Raises:
            AuthenticationError: the secret is missing or wrong, or no secret is configured.
            InvalidInputError: the body is not a webhook payload.
        """
        from hub.hf_sync.webhooks import parse_webhook_payload, verify_webhook

        secret = self.secret
        if not verify_webhook(headers, secret.get_secret_value() if secret is not None else None):
            raise AuthenticationError("webhook refused: X-Webhook-Secret is missing or wrong")
        update = parse_webhook_payload(body)
        if update is None:  # maybe a branch or tag other than main moved: one an adapter may track
            update = self._other_ref_update(body)
        if update is None:
            return WebhookOutcome("ignored", reason="not a content update of a tracked branch of a model repo")
        if update.action == "delete":
            return WebhookOutcome("ignored", update.repo_id, reason="repo deleted upstream; versions are kept")
        trackers = [t for t in self.resync.trackers([update.repo_id]) if update.ref in _refs(t.revision)]
        if not trackers:
            return WebhookOutcome("ignored", update.repo_id, update.sha,
                                  reason=f"no adapter tracks {update.ref} of this repo")
        if update.sha and all(t.sha == update.sha for t in trackers):
            return WebhookOutcome("ignored", update.repo_id, update.sha, reason="already at this commit")
        key = hashlib.sha256(f"{KIND}\0{update.repo_id}\0{update.sha}".encode()).hexdigest() if update.sha else None
        job, _ = self.jobs.submit(KIND, None, {"repo_id": update.repo_id, "sha": update.sha}, recipe_hash=key)
        return WebhookOutcome("queued", update.repo_id, update.sha, job_id=job.id)

    def _other_ref_update(self, body: bytes) -> RepoUpdate | None:
        """The update of a non-main ref that some adapter tracks, if the payload has one."""
        import json

        from hub.hf_sync.webhooks import parse_webhook_payload

        name = json.loads(body).get("repo", {}).get("name")  # valid: parse_webhook_payload checked it
        for rev in sorted({t.revision for t in self.resync.trackers([name])}):
            for ref in _refs(rev):
                update = parse_webhook_payload(body, ref=ref)
                if update is not None:
                    return update
        return None


def _refs(revision: str) -> tuple[str, ...]:
    """The git refs a tracked branch or tag name may move as."""
    return (f"refs/heads/{revision}", f"refs/tags/{revision}")
