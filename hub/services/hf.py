"""Hugging Face Hub sync for a running registry: import, bulk import, re-sync, export, webhooks.

:class:`HfService` joins the DB-free :mod:`hub.hf_sync` layer to the registry. An import fetches a
repo's adapter pinned to a commit sha and publishes it through the normal publish path with
``source="hf:org/repo@sha"``; every (adapter, repo, sha) it has looked at is kept in ``hf_imports``,
so importing a known sha again, or re-syncing a repo that has not moved, downloads nothing and adds
no version. A commit that changes only the card maps onto the version that already holds the content.

Name mapping (:func:`default_name`): ``org/Repo.Name`` becomes ``hf-org/repo.name``: lowercased,
each run of characters outside ``[a-z0-9._-]`` replaced by ``-``, ``..`` collapsed, leading and
trailing ``.-_`` trimmed, and a part over 64 characters cut to 55 plus ``-`` and 8 hex of its sha1.
A caller may give any ``ns/name`` instead.

The Hub client is built from settings (``hf_endpoint``, ``hf_token``); without a token it sends none
(``token=False``, never an ambient one). Tokens stay in ``SecretStr`` and are never logged.
Export lives in :mod:`hub.services.hf_export`; the webhook in :mod:`hub.services.hf_webhook`.
"""

from __future__ import annotations

import hashlib
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from hub.core.errors import AuthenticationError, LoomError
from hub.core.files import CONFIG_NAME, README_NAME, WEIGHTS_NAME
from hub.db.hf import HfImport
from hub.db.models import Adapter, AdapterVersion, User
from hub.hf_sync.refs import is_commit_sha, parse_repo_ref
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy
from hub.jobs.worker import HANDLERS
from hub.services import validation as v
from hub.services.hf_export import ExportMixin, ExportResult, WebhookOutcome

__all__ = ["BulkOutcome", "ExportResult", "HfService", "ImportResult", "SyncReport", "Tracker", "WebhookOutcome",
           "default_name"]

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi

    from hub.hf_sync.search import HubAdapterRef
    from hub.jobs.queue import JobView
    from hub.jobs.worker import Reporter
    from hub.services.hub import Hub

log = logging.getLogger(__name__)

CARD_NAME = README_NAME
DEFAULT_TRACK = "main"


def _name_part(text: str) -> str:
    part = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    part = re.sub(r"\.{2,}", ".", part).strip("-._") or "x"
    if len(part) > 64:
        part = part[:55].rstrip("-._") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return part


def default_name(repo_id: str) -> str:
    """The Loom name an import of ``repo_id`` gets unless one is given: ``hf-<org>/<repo>``, sanitised."""
    org, _, repo = repo_id.partition("/")
    return f"{_name_part('hf-' + org)}/{_name_part(repo)}"


def clean_tags(tags: Sequence[str]) -> list[str]:
    """Card and listing tags that fit Loom's tag rule (lowercased), de-duplicated, at most ``MAX_TAGS``."""
    out: list[str] = []
    for t in tags:
        t2 = str(t).strip().lower()
        if v.TAG_RE.match(t2) and t2 not in out:
            out.append(t2)
    return out[: v.MAX_TAGS]


@dataclass(frozen=True)
class ImportResult:
    """One imported (or already known) Hub commit: the Loom adapter and version holding it."""

    adapter: Adapter
    version: AdapterVersion
    created: bool
    repo_id: str
    sha: str
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class BulkOutcome:
    """A bulk import's result for one repo: ``imported``, ``skipped`` (known sha) or ``failed``."""

    repo_id: str
    status: Literal["imported", "skipped", "failed"]
    result: ImportResult | None = None
    error: LoomError | None = None


@dataclass(frozen=True)
class Tracker:
    """An adapter that follows a Hub repo: its newest imported sha and the branch or tag it tracks."""

    adapter_id: int
    name: str
    owner: User
    repo_id: str
    revision: str
    sha: str


@dataclass
class SyncReport:
    """What a re-sync did: versions added (or mapped), adapters already current, failures by name."""

    updated: list[ImportResult] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    errors: dict[str, LoomError] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "updated": [{"name": r.adapter.full_name, "version": r.version.number, "repo_id": r.repo_id,
                         "sha": r.sha, "created": r.created} for r in self.updated],
            "unchanged": list(self.unchanged),
            "errors": {k: {"code": e.code, "message": e.message} for k, e in self.errors.items()},
        }


class HfService(ExportMixin):
    """Hub sync operations of one registry: import, bulk import, re-sync, export and webhooks.

    Args:
        hub: the service container.
        api: an ``HfApi`` to use instead of one built from settings (tests, custom clients).
        policy: retry policy for rate limits and 5xx.
    """

    def __init__(self, hub: Hub, api: HfApi | None = None, policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.hub = hub
        self._api = api
        self.policy = policy

    @property
    def api(self) -> HfApi:
        """The ``HfApi`` from settings: ``hf_endpoint`` and ``hf_token`` (no token: none sent)."""
        if self._api is None:
            from huggingface_hub import HfApi

            s = self.hub.settings
            token = s.hf_token.get_secret_value() if s.hf_token is not None else None
            self._api = HfApi(endpoint=s.hf_endpoint.rstrip("/"), token=token or False)
        return self._api

    # -- import ---------------------------------------------------------------------------------
    def import_repo(self, user: User | None, ref: str, *, name: str | None = None,
                    visibility: str | None = None, track: str | None = None) -> ImportResult:
        """Import ``org/repo[@revision]`` as a version of ``name`` (default :func:`default_name`).

        The revision is resolved to a commit sha first; a sha this adapter already has returns its
        version without downloading anything. The files are fetched at that sha, validated, and
        published with ``source="hf:org/repo@sha"``, the card's body as description and its license
        and tags. ``visibility`` defaults to private for private or gated Hub repos, else public.

        Args:
            track: the branch or tag a re-sync follows (default: the revision asked for, ``main`` for a sha).

        Raises:
            AuthenticationError: no user; or the repo needs a Hub token.
            InvalidInputError: a malformed ref, name or visibility.
            NotFoundError / PermissionDeniedError / InvalidAdapterError / UpstreamError: see
                :func:`hub.hf_sync.fetch_adapter`; nothing is registered then.
        """
        from hub.hf_sync.search import upstream_sha

        if user is None:
            raise AuthenticationError("importing from the Hugging Face Hub needs an API token")
        repo_id, revision = parse_repo_ref(ref)
        full = name or default_name(repo_id)
        ns, nm = v.parse_name(full)
        vis = v.check_visibility(visibility) if visibility is not None else None
        track = track or (revision if revision and not is_commit_sha(revision) else DEFAULT_TRACK)
        sha = revision if is_commit_sha(revision) else upstream_sha(
            self.api, repo_id, revision, policy=self.policy)  # type: ignore[arg-type]  # None: default branch
        known = self._known(user, ns, nm, repo_id, sha)  # type: ignore[arg-type]
        if known is not None:
            return known
        self._check_name(user, ns, nm)
        return self._fetch_and_publish(user, repo_id, sha, f"{ns}/{nm}", vis, track)  # type: ignore[arg-type]

    def _known(self, user: User, ns: str, nm: str, repo_id: str, sha: str) -> ImportResult | None:
        with self.hub.sessions() as s:
            row = s.execute(
                select(HfImport, Adapter).join(Adapter, Adapter.id == HfImport.adapter_id)
                .where(Adapter.namespace == ns, Adapter.name == nm, HfImport.repo_id == repo_id, HfImport.sha == sha)
            ).first()
            if row is None or row[1].owner_id != user.id:
                return None  # another owner's name: publishing refuses it with the usual error
            version = s.get(AdapterVersion, row[0].version_id)
            assert version is not None
            return ImportResult(row[1], version, False, repo_id, sha, ["this commit was already imported"])

    def _check_name(self, user: User, ns: str, nm: str) -> None:
        """Refuse another owner's name before downloading anything (publish would refuse it after)."""
        from hub.repositories import adapters as repo
        from hub.services.publish import Publisher

        with self.hub.sessions() as s:
            row = repo.get_adapter(s, ns, nm)
            if row is not None:
                Publisher._check_owner(row, user)

    def _fetch_and_publish(self, user: User, repo_id: str, sha: str, full: str, vis: str | None,
                           track: str) -> ImportResult:
        from hub.hf_sync.fetch import fetch_adapter
        from hub.services.publish import PublishFiles

        root = self.hub.settings.cache_dir / "hf"
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="import-", dir=root))
        try:
            got = fetch_adapter(self.api, repo_id, sha, dest_dir=tmp / "adapter",
                                max_bytes=self.hub.settings.max_upload_bytes, policy=self.policy)
            warnings: list[str] = []
            readme = (got.path / CARD_NAME).read_bytes() if (got.path / CARD_NAME).is_file() else None
            if readme is not None and len(readme) > v.MAX_README_BYTES:
                warnings.append(f"the Hub's {CARD_NAME} is over {v.MAX_README_BYTES} bytes; a card was generated")
                readme = None
            lic = got.license if got.license and v.LICENSE_RE.match(got.license) else None
            if got.license and lic is None:
                warnings.append(f"license {got.license!r} from the card is not an SPDX-like id; not recorded")
            if vis is None:
                vis = "private" if got.private or got.gated else "public"
            res = self.hub.adapters.publish(
                user, full, PublishFiles(config=(got.path / CONFIG_NAME).read_bytes(),
                                         weights=got.path / WEIGHTS_NAME, readme=readme),
                description=got.description[: v.MAX_DESCRIPTION] or None, tags=clean_tags(got.tags),
                license=lic, visibility=vis, source=got.source,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        self._record(res.adapter.id, res.version.id, repo_id, track, sha)
        log.info("imported %s@%s as %s@%d (created=%s)", repo_id, sha, full, res.version.number, res.created)
        return ImportResult(res.adapter, res.version, res.created, repo_id, sha, [*warnings, *res.warnings])

    def _record(self, adapter_id: int, version_id: int, repo_id: str, track: str, sha: str) -> None:
        try:
            with self.hub.sessions.begin() as s:
                s.add(HfImport(adapter_id=adapter_id, version_id=version_id, repo_id=repo_id, revision=track,
                               sha=sha))
        except IntegrityError:
            pass  # recorded concurrently by another import of the same commit

    def search(self, *, search: str | None = None, author: str | None = None, base_model: str | None = None,
               limit: int = 20) -> list[HubAdapterRef]:
        """PEFT adapters on the Hub (see :func:`hub.hf_sync.search_adapters`), each with its current sha."""
        from hub.hf_sync.search import search_adapters

        return search_adapters(self.api, search, author, base_model, limit, policy=self.policy)

    def import_search(self, user: User | None, *, search: str | None = None, author: str | None = None,
                      base_model: str | None = None, limit: int = 20, visibility: str | None = None,
                      progress: Callable[[int, int, BulkOutcome], None] | None = None) -> list[BulkOutcome]:
        """Import every PEFT adapter a Hub search lists, each pinned to the sha the listing saw.

        One failing repo does not stop the others: it is reported with ``status="failed"``.
        ``progress(done, total, outcome)`` is called after each repo.

        Raises:
            AuthenticationError: no user. InvalidInputError: a bad limit or base model id.
            UpstreamError: the search itself failed.
        """
        if user is None:
            raise AuthenticationError("importing from the Hugging Face Hub needs an API token")
        if visibility is not None:
            v.check_visibility(visibility)
        refs = self.search(search=search, author=author, base_model=base_model, limit=limit)
        out: list[BulkOutcome] = []
        for ref in refs:
            try:
                res = self.import_repo(user, f"{ref.repo_id}@{ref.sha}" if ref.sha else ref.repo_id,
                                       visibility=visibility, track=DEFAULT_TRACK)
                outcome = BulkOutcome(ref.repo_id, "imported" if res.created else "skipped", result=res)
            except LoomError as e:
                outcome = BulkOutcome(ref.repo_id, "failed", error=e)
            out.append(outcome)
            if progress is not None:
                progress(len(out), len(refs), outcome)
        return out

    # -- re-sync --------------------------------------------------------------------------------
    def trackers(self, repos: Sequence[str] | None = None, *, owner: User | None = None) -> list[Tracker]:
        """Every (adapter, repo) pair imported so far (of ``repos``, of adapters ``owner`` owns), newest sha each."""
        with self.hub.sessions() as s:
            newest = select(func.max(HfImport.id)).group_by(HfImport.adapter_id, HfImport.repo_id)
            if repos is not None:
                newest = newest.where(HfImport.repo_id.in_(list(repos)))
            q = (select(HfImport, Adapter).join(Adapter, Adapter.id == HfImport.adapter_id)
                 .where(HfImport.id.in_(newest)).order_by(HfImport.repo_id, Adapter.id))
            if owner is not None:
                q = q.where(Adapter.owner_id == owner.id)
            rows = s.execute(q).all()
            return [Tracker(a.id, a.full_name, a.owner, imp.repo_id, imp.revision, imp.sha) for imp, a in rows]

    def sync(self, *, repos: Sequence[str] | None = None, owner: User | None = None,
             progress: Callable[[int, int, str], None] | None = None) -> SyncReport:
        """Check every tracked repo (or those in ``repos``; of ``owner``'s adapters) upstream; import new shas.

        Each adapter is updated as its owner. Repos whose tracked branch has not moved are not
        downloaded; a new commit with content identical to a version already held adds no version.
        ``progress(done, total, repo_id)`` is called after each repo.
        """
        from hub.hf_sync.search import plan_sync

        report = SyncReport()
        by_track: dict[str, dict[str, list[Tracker]]] = {}
        for t in self.trackers(repos, owner=owner):
            by_track.setdefault(t.revision, {}).setdefault(t.repo_id, []).append(t)
        total = sum(len(g) for g in by_track.values())
        done = 0
        for track, group in by_track.items():
            known = {r: (ts[0].sha if len({t.sha for t in ts}) == 1 else None) for r, ts in group.items()}
            plan = plan_sync(self.api, known, revisions={r: track for r in group}, policy=self.policy)
            for repo_id, err in plan.errors.items():
                for t in group[repo_id]:
                    report.errors[t.name] = err
            report.unchanged += [t.name for r in plan.unchanged for t in group[r]]
            for upd in plan.updates:
                for t in group[upd.repo_id]:
                    if t.sha == upd.upstream_sha:
                        report.unchanged.append(t.name)
                        continue
                    try:
                        report.updated.append(self.import_repo(
                            t.owner, f"{upd.repo_id}@{upd.upstream_sha}", name=t.name, track=track))
                    except LoomError as e:
                        log.warning("sync of %s from %s failed: %s", t.name, upd.repo_id, e)
                        report.errors[t.name] = e
            for repo_id in group:
                done += 1
                if progress is not None:
                    progress(done, total, repo_id)
        return report


def run_sync_job(hub: Hub, job: JobView, report: Reporter) -> dict[str, Any]:
    """Job handler ``hf_sync``: re-sync the repo named in the request (all tracked repos without one)."""
    repo_id = job.request.get("repo_id")
    report(0.0, f"checking {repo_id or 'every tracked repo'} upstream", force=True)
    result = HfService(hub).sync(
        repos=[repo_id] if repo_id else None,
        progress=lambda done, total, repo: report(done / max(total, 1), f"checked {repo}"))
    for item in result.updated:
        report.log(f"{item.repo_id}@{item.sha[:12]} -> {item.adapter.full_name}@{item.version.number}"
                   + ("" if item.created else " (content unchanged)"))
    for name, err in result.errors.items():
        report.log(f"{name}: {err.message}")
    return result.to_dict()


HANDLERS.register("hf_sync", summary="re-sync adapters imported from the Hugging Face Hub")(run_sync_job)
