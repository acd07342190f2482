"""Consistency check of the registry: DB rows vs blobs (local or S3) vs the vector index.

Finds: versions whose blobs are missing, blobs no version references (orphans, e.g. left by a
failed publish or a delete), temp files of uploads whose writer died (a ``kill -9``) or that are
older than the grace period, adapters without an embedding of the configured model, and an index
that does not match the DB. The blob store is listed once (one LIST pass on S3, not a HEAD per
blob). ``repair=True``: deletes versions whose content is gone (an adapter left with no version is
deleted too), deletes orphan blobs and stale temp files older than ``orphan_grace_s`` (younger ones
may belong to a publish in flight; temp files of dead writers go at once), re-embeds adapters
missing a vector, rebuilds the index.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy import select, update

from hub.core.errors import InvalidInputError
from hub.core.files import KINDS, REQUIRED_FILES
from hub.db.models import Adapter, AdapterVersion
from hub.repositories import adapters as repo
from hub.services.search import embedding_text
from hub.services.search_text import stored_vector

if TYPE_CHECKING:  # pragma: no cover
    from sqlalchemy.orm import Session, sessionmaker

    from hub.services.search import SearchService
    from hub.storage import BlobStore


@dataclass
class FsckReport:
    """What fsck found and, with repair, what it did."""

    checked: dict[str, int] = field(default_factory=dict)
    missing_blobs: list[dict] = field(default_factory=list)
    missing_files: list[dict] = field(default_factory=list)
    orphan_blobs: list[str] = field(default_factory=list)
    young_orphans: list[str] = field(default_factory=list)
    stale_temp_files: list[str] = field(default_factory=list)
    missing_embeddings: list[str] = field(default_factory=list)
    stale_index: bool = False
    store: str = ""
    repaired: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        # a stale persisted index is not a problem: it is a cache each process rewrites (the API's and the
        # workers' views differ for a few seconds after every publish) and a start rebuilds it from the DB
        return not (self.missing_blobs or self.missing_files or self.orphan_blobs or self.stale_temp_files
                    or self.missing_embeddings)

    def to_dict(self) -> dict:
        return {
            "ok": self.ok, "store": self.store, "checked": self.checked, "missing_blobs": self.missing_blobs,
            "missing_files": self.missing_files,
            "orphan_blobs": self.orphan_blobs, "young_orphans": self.young_orphans,
            "stale_temp_files": self.stale_temp_files, "missing_embeddings": self.missing_embeddings,
            "stale_index": self.stale_index, "repaired": self.repaired,
        }


class Fsck:
    """Check (and with ``repair`` fix) one registry: its database, blob store and search index.

    Args:
        sessions: the DB. blobs: the blob store. search: embeds and indexes. embedding_model: the configured model.
    """

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, search: SearchService,
                 embedding_model: str) -> None:
        self.sessions, self.blobs, self.search, self.embedding_model = sessions, blobs, search, embedding_model

    def run(self, *, repair: bool = False, orphan_grace_s: float = 3600.0,
            kinds: tuple[str, ...] | None = None) -> FsckReport:
        """See the module docstring. ``kinds``: check only versions of these artifact kinds (adapter, router,
        generator); the store-wide checks (orphan blobs, temp files, the index) run only without it.

        Raises:
            InvalidInputError: an unknown kind.
        """
        unknown = sorted(set(kinds or ()) - set(KINDS))
        if unknown:
            raise InvalidInputError(f"unknown artifact kind(s) {unknown}; kinds are {', '.join(KINDS)}", field="kind")
        blobs = self.blobs
        rep = FsckReport(store=blobs.describe())
        self.search.save()  # this process's in-memory index changes count as persisted
        with self.sessions() as s:
            versions = repo.all_version_files(s)
            model = self.embedding_model
            # only adapters are embedded and searched: routers and generators have no vector on purpose
            no_vec = [(i, f"{ns}/{n}") for i, ns, n, e, m in s.execute(
                select(Adapter.id, Adapter.namespace, Adapter.name, Adapter.embedding, Adapter.embedding_model)
                .where(Adapter.kind == "adapter"))
                if e is None or m != model] if kinds is None or "adapter" in kinds else []
        stored = {b.key: b for b in blobs.list_blobs()}  # listed after the versions were read: see module doc
        referenced: set[str] = set()
        broken: set[int] = set()
        for vid, label, files, kind in versions:
            for entry in files.values():
                referenced.add(entry.get("key"))
            if kinds is not None and kind not in kinds:
                continue
            rep.checked[kind] = rep.checked.get(kind, 0) + 1
            for fname in REQUIRED_FILES.get(kind, ()):
                if fname not in files:
                    rep.missing_files.append({"version": label, "kind": kind, "file": fname})
            for fname, entry in files.items():
                key = entry.get("key")
                if key not in stored:
                    rep.missing_blobs.append({"version": label, "file": fname, "key": key})
                    broken.add(vid)
        stale_temp = []
        if kinds is None:  # the store-wide checks
            now = time.time()
            for key, info in stored.items():
                if key not in referenced:
                    old = now - info.modified.timestamp() >= orphan_grace_s
                    (rep.orphan_blobs if old else rep.young_orphans).append(key)
            stale_temp = blobs.stale_temp_files(orphan_grace_s)
            rep.stale_temp_files = [f.name for f in stale_temp]
            rep.stale_index = self.search.is_stale()
        rep.missing_embeddings = [label for _, label in no_vec]
        if not repair:
            return rep

        if broken:
            with self.sessions.begin() as s:
                for vid in broken:
                    ver = s.get(AdapterVersion, vid)
                    if ver is None:
                        continue
                    adapter = ver.adapter
                    s.delete(ver)
                    s.flush()
                    rest = repo.list_versions(s, adapter)
                    if not rest:
                        s.delete(adapter)
                        rep.repaired.append(f"deleted {adapter.full_name} (its only content was missing)")
                    else:
                        adapter.latest_version, adapter.latest_rank = rest[-1].number, rest[-1].rank
                        rep.repaired.append(f"deleted version {adapter.full_name}@{ver.number} (content missing)")
        for key in rep.orphan_blobs:
            if blobs.delete(key):
                rep.repaired.append(f"deleted orphan blob {key}")
        if stale_temp:
            from hub.storage.staging import remove

            rep.repaired.append(f"deleted {remove(stale_temp)} stale upload temp file(s)")
        if no_vec:
            with self.sessions() as s:
                rows = list(s.execute(select(Adapter.id, Adapter.namespace, Adapter.name, Adapter.description,
                                             Adapter.tags).where(Adapter.id.in_([i for i, _ in no_vec]))))
            if rows:
                vecs = self.search.embed([embedding_text(r[1], r[2], r[3], r[4] or []) for r in rows])
                with self.sessions.begin() as s:
                    for r, vec in zip(rows, vecs, strict=True):
                        blob = vec.tobytes()
                        s.execute(update(Adapter).where(Adapter.id == r[0]).values(
                            **stored_vector(blob, model), updated_at=Adapter.updated_at))
                rep.repaired.append(f"re-embedded {len(rows)} adapter(s)")
        if rep.stale_index or broken or no_vec:
            n = self.search.rebuild()
            rep.repaired.append(f"rebuilt the search index ({n} vectors)")
        return rep
