"""Imports from the Hugging Face Hub: one repo pinned to a commit, or every adapter a Hub search lists.

:class:`HfImports` joins the DB-free :mod:`hub.hf_sync` layer to the registry. An import fetches a
repo's adapter pinned to a commit sha and publishes it through the normal publish path with
``source="hf:org/repo@sha"``; every (adapter, repo, sha) it has looked at is kept in ``hf_imports``,
so importing a known sha again, or re-syncing a repo that has not moved, downloads nothing and adds
no version. A commit that changes only the card maps onto the version that already holds the content.

Name mapping (:func:`default_name`): ``org/Repo.Name`` imported by ``alice`` becomes ``alice/repo.name`` (a
user publishes only into its own namespace): lowercased, each run of characters outside ``[a-z0-9._-]``
replaced by ``-``, ``..`` collapsed, leading and trailing ``.-_`` trimmed, and a name over 64 characters cut
to 55 plus ``-`` and 8 hex of its sha1. A caller may give another name in its own namespace instead.

Re-syncs live in :mod:`hub.services.hf_resync`, export in :mod:`hub.services.hf_export`, webhooks in
:mod:`hub.services.hf_webhooks`; :class:`hub.services.hf.HfService` joins them with one Hub client.
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
from typing import TYPE_CHECKING, Literal

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import AuthenticationError, LoomError
from hub.core.files import CONFIG_NAME, README_NAME, WEIGHTS_NAME
from hub.db.hf import HfImport
from hub.db.models import Adapter, AdapterVersion, User
from hub.hf_sync.refs import is_commit_sha, parse_repo_ref
from hub.services import validation as v
from hub.services.publish import PublishFiles

if TYPE_CHECKING:  # pragma: no cover
    from hub.hf_sync.search import HubAdapterRef
    from hub.services.hf_client import HubClient
    from hub.services.publish import Publisher

log = logging.getLogger(__name__)

CARD_NAME = README_NAME
DEFAULT_TRACK = "main"


def _name_part(text: str) -> str:
    part = re.sub(r"[^a-z0-9._-]+", "-", text.lower())
    part = re.sub(r"\.{2,}", ".", part).strip("-._") or "x"
    if len(part) > 64:
        part = part[:55].rstrip("-._") + "-" + hashlib.sha1(text.encode()).hexdigest()[:8]
    return part


def default_name(repo_id: str, user_name: str) -> str:
    """The Loom name an import of ``repo_id`` by ``user_name`` gets unless one is given: ``<user>/<repo>``,
    sanitised."""
    _, _, repo = repo_id.partition("/")
    return f"{user_name}/{_name_part(repo)}"


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


class HfImports:
    """Import adapters from the Hugging Face Hub: one repo, or every adapter a Hub search lists.

    Args:
        client: the Hub client and retry policy. sessions: the DB (``hf_imports`` records).
        adapters: reads imported versions. publisher: publishes imports. cache_dir: where downloads are staged.
        max_upload_bytes: the size limit of one import.
    """

    def __init__(self, client: HubClient, sessions: sessionmaker[Session], publisher: Publisher, *,
                 cache_dir: Path, max_upload_bytes: int) -> None:
        self.client, self.sessions, self.publisher = client, sessions, publisher
        self.cache_dir, self.max_upload_bytes = cache_dir, max_upload_bytes

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
        full = name or default_name(repo_id, user.name)
        ns, nm = v.check_namespace(user.name, full)
        vis = v.check_visibility(visibility) if visibility is not None else None
        track = track or (revision if revision and not is_commit_sha(revision) else DEFAULT_TRACK)
        sha = revision if is_commit_sha(revision) else upstream_sha(
            self.client.api, repo_id, revision, policy=self.client.policy)  # type: ignore[arg-type]  # None: default branch
        known = self._known(user, ns, nm, repo_id, sha)  # type: ignore[arg-type]
        if known is not None:
            return known
        self.publisher.check_can_publish(user, f"{ns}/{nm}")  # before downloading anything
        return self._fetch_and_publish(user, repo_id, sha, f"{ns}/{nm}", vis, track)  # type: ignore[arg-type]

    def _known(self, user: User, ns: str, nm: str, repo_id: str, sha: str) -> ImportResult | None:
        with self.sessions() as s:
            row = s.execute(
                select(HfImport, Adapter).join(Adapter, Adapter.id == HfImport.adapter_id)
                .where(Adapter.namespace == ns, Adapter.name == nm, HfImport.repo_id == repo_id, HfImport.sha == sha)
            ).first()
            if row is None or row[1].owner_id != user.id:
                return None  # another owner's name: publishing refuses it with the usual error
            version = s.get(AdapterVersion, row[0].version_id)
            assert version is not None
            return ImportResult(row[1], version, False, repo_id, sha, ["this commit was already imported"])

    def _fetch_and_publish(self, user: User, repo_id: str, sha: str, full: str, vis: str | None,
                           track: str) -> ImportResult:
        from hub.hf_sync.fetch import fetch_adapter

        root = self.cache_dir / "hf"
        root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix="import-", dir=root))
        try:
            got = fetch_adapter(self.client.api, repo_id, sha, dest_dir=tmp / "adapter",
                                max_bytes=self.max_upload_bytes, policy=self.client.policy)
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
            res = self.publisher.publish(
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
            with self.sessions.begin() as s:
                s.add(HfImport(adapter_id=adapter_id, version_id=version_id, repo_id=repo_id, revision=track,
                               sha=sha))
        except IntegrityError:
            pass  # recorded concurrently by another import of the same commit

    def search(self, *, search: str | None = None, author: str | None = None, base_model: str | None = None,
               limit: int = 20) -> list[HubAdapterRef]:
        """PEFT adapters on the Hub (see :func:`hub.hf_sync.search_adapters`), each with its current sha."""
        from hub.hf_sync.search import search_adapters

        return search_adapters(self.client.api, search, author, base_model, limit, policy=self.client.policy)

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

