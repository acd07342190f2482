"""Re-syncs from the Hugging Face Hub: every imported (adapter, repo) pair follows its branch or tag.

A re-sync checks each tracked repo upstream and imports new commits (through
:class:`hub.services.hf_imports.HfImports`); repos whose tracked ref has not moved download nothing,
and a new commit with content identical to a version already held adds no version. The ``hf_sync``
job (queued by the Hub's webhook, :mod:`hub.services.hf_webhooks`) runs one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import LoomError, NotFoundError
from hub.db.hf import HfImport
from hub.db.models import Adapter, User
from hub.services.hf_imports import ImportResult

if TYPE_CHECKING:  # pragma: no cover
    from hub.jobs.queue import JobView
    from hub.jobs.reporter import Reporter
    from hub.services.hf_client import HubClient
    from hub.services.hf_imports import HfImports

log = logging.getLogger(__name__)

KIND = "hf_sync"


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


class HfResync:
    """Follow imported repos upstream.

    Args:
        client: the Hub client and retry policy. sessions: the DB (``hf_imports``). imports: imports new commits.
    """

    def __init__(self, client: HubClient, sessions: sessionmaker[Session], imports: HfImports) -> None:
        self.client, self.sessions, self.imports = client, sessions, imports

    def trackers(self, repos: Sequence[str] | None = None, *, owner: User | None = None) -> list[Tracker]:
        """Every (adapter, repo) pair imported so far (of ``repos``, of adapters ``owner`` owns), newest sha each."""
        with self.sessions() as s:
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
             progress: Callable[[int, int, str], None] | None = None, require_tracked: bool = False) -> SyncReport:
        """Check every tracked repo (or those in ``repos``; of ``owner``'s adapters) upstream; import new shas.

        Each adapter is updated as its owner. Repos whose tracked branch has not moved are not
        downloaded; a new commit with content identical to a version already held adds no version.
        ``progress(done, total, repo_id)`` is called after each repo.

        Raises:
            NotFoundError: ``require_tracked`` (a user's request) and a repo of ``repos`` that no adapter (of
                ``owner``) was imported from; nothing is synced.
        """
        from hub.hf_sync.search import plan_sync

        report = SyncReport()
        by_track: dict[str, dict[str, list[Tracker]]] = {}
        trackers = self.trackers(repos, owner=owner)
        untracked = sorted(set(repos or ()) - {t.repo_id for t in trackers})
        if require_tracked and untracked:
            listed = ", ".join(untracked)
            raise NotFoundError(f"{listed} {'was' if len(untracked) == 1 else 'were'} never imported"
                                f"{' by ' + owner.name if owner else ''}, so there is nothing to sync: import "
                                f"{'it' if len(untracked) == 1 else 'them'} first (`loom hf pull {untracked[0]}`)",
                                repos=untracked)
        for t in trackers:
            by_track.setdefault(t.revision, {}).setdefault(t.repo_id, []).append(t)
        total = sum(len(g) for g in by_track.values())
        done = 0
        for track, group in by_track.items():
            known = {r: (ts[0].sha if len({t.sha for t in ts}) == 1 else None) for r, ts in group.items()}
            plan = plan_sync(self.client.api, known, revisions={r: track for r in group}, policy=self.client.policy)
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
                        report.updated.append(self.imports.import_repo(
                            t.owner, f"{upd.repo_id}@{upd.upstream_sha}", name=t.name, track=track))
                    except LoomError as e:
                        log.warning("sync of %s from %s failed: %s", t.name, upd.repo_id, e)
                        report.errors[t.name] = e
            for repo_id in group:
                done += 1
                if progress is not None:
                    progress(done, total, repo_id)
        return report

    def run(self, job: JobView, report: Reporter) -> dict[str, Any]:
        """Job handler ``hf_sync``: re-sync the repo named in the request (all tracked repos without one)."""
        repo_id = job.request.get("repo_id")
        report(0.0, f"checking {repo_id or 'every tracked repo'} upstream", force=True)
        result = self.sync(repos=[repo_id] if repo_id else None,
                           progress=lambda done, total, repo: report(done / max(total, 1), f"checked {repo}"))
        for item in result.updated:
            report.log(f"{item.repo_id}@{item.sha[:12]} -> {item.adapter.full_name}@{item.version.number}"
                       + ("" if item.created else " (content unchanged)"))
        for name, err in result.errors.items():
            report.log(f"{name}: {err.message}")
        return result.to_dict()
