"""Export a registry version to the Hugging Face Hub, and turn Hub webhooks into sync jobs.

Export writes the version's PEFT files to a temporary folder, renders a model card with
:func:`hub.hf_sync.card_for_provenance` (``library_name: peft``, ``base_model``,
``base_model_relation: adapter``, ``base_model:adapter:<id>``; for a composed adapter its parents as
``merged_from`` and its recipe), pushes both in one commit and records the commit sha in
``hf_exports``. Parents that were themselves imported from the Hub are named by their Hub repo and
commit in the card, others by their Loom name and version. Only an adapter's owner may export it,
since the push uses the deployment's Hub token.

A webhook call must carry the configured secret (``X-Webhook-Secret``); a model content update of
a repo Loom tracks queues one ``hf_sync`` job (deduplicated per repo and sha), which a worker runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hub.core.errors import AuthenticationError, InvalidInputError, PermissionDeniedError
from hub.core.files import CONFIG_NAME, WEIGHTS_NAME
from hub.core.refs import AdapterRef
from hub.db.hf import HfExport
from hub.hf_sync.refs import SOURCE_PREFIX, parse_source, validate_repo_id
from hub.services import validation as v

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi

    from hub.core.provenance import Provenance
    from hub.db.models import AdapterVersion, User
    from hub.hf_sync.retry import RetryPolicy
    from hub.hf_sync.webhooks import RepoUpdate
    from hub.services.hf import Tracker
    from hub.services.hub import Hub


@dataclass(frozen=True)
class ExportResult:
    """A pushed version: the Hub repo, the commit it made, and where to see it."""

    name: str
    version: int
    repo_id: str
    commit_sha: str
    url: str

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


class ExportMixin:
    """Export and webhook handling of :class:`hub.services.hf.HfService` (which provides these attributes)."""

    hub: Hub
    api: HfApi
    policy: RetryPolicy

    def trackers(self, repos: Sequence[str] | None = None) -> list[Tracker]:  # pragma: no cover - HfService's
        raise NotImplementedError

    def export(self, user: User | None, ref: str, repo_id: str, *, private: bool = False,
               commit_message: str | None = None) -> ExportResult:
        """Push version ``ns/name[@version]`` (latest by default) to ``repo_id`` with a generated card.

        Raises:
            AuthenticationError: no user, or no Hub token configured.
            PermissionDeniedError: the caller does not own the adapter, or the token may not write there.
            NotFoundError: no such adapter or version. InvalidInputError: a bad ref or repo id.
            UpstreamError: the Hub failed; nothing is recorded then.
        """
        from hub.hf_sync.push import push_adapter

        if user is None:
            raise AuthenticationError("exporting to the Hugging Face Hub needs an API token")
        r = AdapterRef.parse(ref)
        ns, nm, number = r.namespace, r.name, r.version
        validate_repo_id(repo_id)
        adapter = self.hub.adapters.get(user, ns, nm)
        if adapter.owner_id != user.id:
            raise PermissionDeniedError(f"only the owner of {ns}/{nm} can export it to the Hugging Face Hub")
        ver = self.hub.adapters.version(user, ns, nm, number)
        card = self._card(ver, adapter.full_name, adapter.description, adapter.license, list(adapter.tags or []))
        root = self.hub.settings.cache_dir / "hf"
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="export-", dir=root))
        try:
            for filename in (CONFIG_NAME, WEIGHTS_NAME):
                with (tmp / filename).open("wb") as f:
                    for chunk in self.hub.blobs.iter_bytes(ver.files[filename]["key"]):
                        f.write(chunk)
            sha = push_adapter(self.api, tmp, repo_id, card, private,
                               commit_message=commit_message or f"Upload {ns}/{nm}@{ver.number} from Loom",
                               policy=self.policy)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        with self.hub.sessions.begin() as s:
            s.add(HfExport(version_id=ver.id, repo_id=repo_id, commit_sha=sha, created_by_id=user.id))
        url = f"{self.hub.settings.hf_endpoint.rstrip('/')}/{repo_id}"
        return ExportResult(f"{ns}/{nm}", ver.number, repo_id, sha, url)

    def exports(self, version_id: int) -> list[HfExport]:
        """The recorded pushes of a version, oldest first."""
        from sqlalchemy import select

        with self.hub.sessions() as s:
            return list(s.scalars(select(HfExport).where(HfExport.version_id == version_id).order_by(HfExport.id)))

    def _card(self, ver: AdapterVersion, full_name: str, description: str, license: str | None,  # noqa: A002
              tags: list[str]) -> str:
        from hub.core.provenance import Provenance
        from hub.hf_sync.cards import card_for_provenance

        prov = self._hub_parents(Provenance.from_dict(ver.provenance)) if ver.provenance else None
        source = ver.source if ver.source.startswith(SOURCE_PREFIX) else f"loom:{full_name}@{ver.number}"
        return card_for_provenance(prov, base_model=ver.base_model, name=full_name, description=description,
                                   license=license, tags=[t for t in tags if not t.startswith("base_model:")],
                                   source=source)

    def _hub_parents(self, prov: Provenance) -> Provenance:
        """Name parents imported from the Hub by their repo id and commit, so the Hub links the lineage."""
        out = []
        for p in prov.parents:
            try:
                pns, pnm = v.parse_name(p.name)
                number = int(p.version) if p.version not in (None, "") else None
                with self.hub.sessions() as s:
                    from hub.repositories import adapters as repo

                    a = repo.get_adapter(s, pns, pnm)
                    pv = repo.get_version(s, a, number) if a is not None else None
                if pv is not None and pv.source.startswith(SOURCE_PREFIX):
                    hub_id, sha = parse_source(pv.source)
                    p = dataclasses.replace(p, name=hub_id, version=sha)
            except (InvalidInputError, ValueError):
                pass  # a parent name that is not a Loom name stays as it is
            out.append(p)
        return dataclasses.replace(prov, parents=tuple(out))

    # -- webhooks -------------------------------------------------------------------------------
    def handle_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookOutcome:
        """Verify a Hub webhook and queue a sync of the repo it names, if Loom tracks it.

        Raises:
            AuthenticationError: the secret is missing or wrong, or no secret is configured.
            InvalidInputError: the body is not a webhook payload.
        """
        from hub.hf_sync.webhooks import parse_webhook_payload, verify_webhook
        from hub.jobs.queue import JobQueue

        secret = self.hub.settings.hf_webhook_secret
        if not verify_webhook(headers, secret.get_secret_value() if secret is not None else None):
            raise AuthenticationError("webhook refused: X-Webhook-Secret is missing or wrong")
        update = parse_webhook_payload(body)
        if update is None:  # maybe a branch or tag other than main moved: one an adapter may track
            update = self._other_ref_update(body)
        if update is None:
            return WebhookOutcome("ignored", reason="not a content update of a tracked branch of a model repo")
        if update.action == "delete":
            return WebhookOutcome("ignored", update.repo_id, reason="repo deleted upstream; versions are kept")
        trackers = [t for t in self.trackers([update.repo_id]) if update.ref in _refs(t.revision)]
        if not trackers:
            return WebhookOutcome("ignored", update.repo_id, update.sha,
                                  reason=f"no adapter tracks {update.ref} of this repo")
        if update.sha and all(t.sha == update.sha for t in trackers):
            return WebhookOutcome("ignored", update.repo_id, update.sha, reason="already at this commit")
        key = hashlib.sha256(f"hf_sync\0{update.repo_id}\0{update.sha}".encode()).hexdigest() if update.sha else None
        job, _ = JobQueue(self.hub.sessions).submit("hf_sync", None, {"repo_id": update.repo_id,
                                                                        "sha": update.sha}, recipe_hash=key)
        return WebhookOutcome("queued", update.repo_id, update.sha, job_id=job.id)

    def _other_ref_update(self, body: bytes) -> RepoUpdate | None:
        """The update of a non-main ref that some adapter tracks, if the payload has one."""
        import json

        from hub.hf_sync.webhooks import parse_webhook_payload

        name = json.loads(body).get("repo", {}).get("name")  # valid: parse_webhook_payload checked it
        for rev in sorted({t.revision for t in self.trackers([name])}):
            for ref in _refs(rev):
                update = parse_webhook_payload(body, ref=ref)
                if update is not None:
                    return update
        return None


def _refs(revision: str) -> tuple[str, ...]:
    """The git refs a tracked branch or tag name may move as."""
    return (f"refs/heads/{revision}", f"refs/tags/{revision}")
