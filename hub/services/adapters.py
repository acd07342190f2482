"""Reading, downloading, patching and deleting adapters, with visibility enforced everywhere.

Private adapters are reported as not found (404) to everyone but their owner, in listings, search
and file downloads alike. Only owners may patch or delete.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import AuthenticationError, InvalidInputError, NotFoundError, PermissionDeniedError
from hub.core.files import CONFIG_NAME, SAMPLES_NAME, WEIGHTS_NAME
from hub.db.models import Adapter, AdapterVersion, User
from hub.repositories import adapters as repo
from hub.repositories.adapters import AdapterFilters
from hub.services import validation as v
from hub.services.search_text import stored_vector

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.adapter import LoraAdapter
    from hub.services.metrics import Metrics
    from hub.services.search import SearchService
    from hub.storage import BlobStore

MAX_PAGE = 200


@dataclass(frozen=True)
class FileStream:
    """A file of a version, ready to stream."""

    filename: str
    size: int
    sha256: str
    version: int
    chunks: Iterator[bytes]


@dataclass(frozen=True)
class Lineage:
    parents: list[dict]
    children: list[dict]


class AdapterService:
    """Reading, downloading, loading, patching and deleting registry artifacts (publishing is
    :class:`hub.services.publish.Publisher`'s).

    Args:
        sessions: the DB session factory. blobs: the blob store. search: re-embeds and indexes on patch.
        metrics: counts downloads. embedding_model: recorded beside new embeddings.
    """

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, search: SearchService, metrics: Metrics,
                 *, embedding_model: str) -> None:
        self.sessions, self.blobs, self.search, self.metrics = sessions, blobs, search, metrics
        self.embedding_model = embedding_model

    @staticmethod
    def _visible(a: Adapter | None, viewer: User | None, ns: str, name: str) -> Adapter:
        if a is None or (a.visibility != "public" and (viewer is None or viewer.id != a.owner_id)):
            raise NotFoundError(f"adapter {ns}/{name} not found")
        return a

    def exists(self, full_name: str) -> bool:
        """Whether an adapter (of any kind, any visibility) is registered as ``namespace/name``: for internal
        checks that reveal nothing to a caller (a job's own result still being there)."""
        ns, _, name = full_name.split("@")[0].partition("/")
        with self.sessions() as s:
            return repo.get_adapter(s, ns, name) is not None

    def get(self, viewer: User | None, namespace: str, name: str) -> Adapter:
        """The adapter, if ``viewer`` may see it; else NotFoundError."""
        with self.sessions() as s:
            return self._visible(repo.get_adapter(s, namespace, name), viewer, namespace, name)

    def list(self, viewer: User | None, filters: AdapterFilters | None = None, *, offset: int = 0,
             limit: int = 50) -> tuple[list[Adapter], int]:
        """Visible adapters (newest first) and the total that match."""
        if offset < 0 or not 1 <= limit <= MAX_PAGE:
            raise InvalidInputError(f"offset must be >= 0 and limit in 1..{MAX_PAGE}", field="limit", value=limit)
        with self.sessions() as s:
            return repo.list_adapters(s, viewer, filters or AdapterFilters(), offset=offset, limit=limit)

    def versions(self, viewer: User | None, namespace: str, name: str) -> list[AdapterVersion]:
        with self.sessions() as s:
            a = self._visible(repo.get_adapter(s, namespace, name), viewer, namespace, name)
            return repo.list_versions(s, a)

    def version(self, viewer: User | None, namespace: str, name: str, number: int | None = None) -> AdapterVersion:
        """Version ``number`` (latest when None) of a visible adapter."""
        return self.with_version(viewer, namespace, name, number)[1]

    def with_version(self, viewer: User | None, namespace: str, name: str,
                     number: int | None = None) -> tuple[Adapter, AdapterVersion]:
        """A visible adapter and its version ``number`` (latest when None), read in one transaction."""
        with self.sessions() as s:
            a = self._visible(repo.get_adapter(s, namespace, name), viewer, namespace, name)
            ver = repo.get_version(s, a, number)
            if ver is None:
                raise NotFoundError(f"adapter {namespace}/{name} has no version {number}")
            return a, ver

    def lineage(self, viewer: User | None, namespace: str, name: str, number: int | None = None) -> Lineage:
        """Parent and child versions of a version (only visible ones are named)."""
        ver = self.version(viewer, namespace, name, number)
        with self.sessions() as s:
            ups, downs = repo.lineage(s, ver)
            labels = repo.version_labels(s, [e.parent_id for e in ups] + [e.child_id for e in downs], viewer,
                                         visible_only=True)

            def edge(e, other: int) -> dict:
                return {"version": labels.get(other), "method": e.method, "weight": e.weight, "recipe": e.recipe}

            # private relatives of other users are left out, like everywhere else
            return Lineage([edge(e, e.parent_id) for e in ups if e.parent_id in labels],
                           [edge(e, e.child_id) for e in downs if e.child_id in labels])

    def open_file(self, viewer: User | None, namespace: str, name: str, filename: str,
                  number: int | None = None) -> FileStream:
        """Stream a file of a version; counts a download when it is the weights file."""
        ver = self.version(viewer, namespace, name, number)
        entry = (ver.files or {}).get(filename)
        if entry is None:
            raise NotFoundError(
                f"{namespace}/{name}@{ver.number} has no file {filename!r}; files: {sorted(ver.files)}"
            )
        chunks = self.blobs.iter_bytes(entry["key"])  # opens now: a missing blob fails before any byte
        if filename == WEIGHTS_NAME:
            with self.sessions.begin() as s:
                s.execute(update(Adapter).where(Adapter.id == ver.adapter_id)
                          .values(downloads=Adapter.downloads + 1, updated_at=Adapter.updated_at))
        self.metrics.downloads.labels(file=filename).inc()
        return FileStream(filename, int(entry["size"]), entry["key"], ver.number, chunks)

    def read_file(self, viewer: User | None, namespace: str, name: str, filename: str,
                  number: int | None = None) -> bytes:
        return b"".join(self.open_file(viewer, namespace, name, filename, number).chunks)

    def version_file(self, ver: AdapterVersion, filename: str) -> bytes:
        """The bytes of file ``filename`` of a version already resolved (with its visibility checked).

        Raises:
            NotFoundError: the version has no such file.
        """
        entry = (ver.files or {}).get(filename)
        if entry is None:
            raise NotFoundError(f"version {ver.number} has no file {filename!r}; files: {sorted(ver.files or {})}")
        return self.blobs.read_bytes(entry["key"])

    def version_path(self, ver: AdapterVersion, filename: str) -> Path:
        """A local path of file ``filename`` of a resolved version (for readers that need a file)."""
        entry = (ver.files or {}).get(filename)
        if entry is None:
            raise NotFoundError(f"version {ver.number} has no file {filename!r}; files: {sorted(ver.files or {})}")
        return self.blobs.path(entry["key"])

    def load(self, viewer: User | None, name: str, number: int | None = None) -> tuple[LoraAdapter, bytes]:
        """A version as a :class:`LoraAdapter` (validated again on load) and its samples.jsonl bytes.

        Raises:
            NotFoundError: no such (visible) adapter or version, or a version without its PEFT files.
        """
        from hub.core.peft_io import load_peft_files

        ns, nm = v.parse_name(name)
        ver = self.version(viewer, ns, nm, number)
        files = ver.files or {}
        try:
            cfg_path = self.blobs.path(files[CONFIG_NAME]["key"])
            w_path = self.blobs.path(files[WEIGHTS_NAME]["key"])
        except KeyError as e:
            raise NotFoundError(f"{name}@{ver.number} has no {e.args[0]}") from None
        samples = self.blobs.read_bytes(files[SAMPLES_NAME]["key"]) if SAMPLES_NAME in files else b""
        return load_peft_files(cfg_path, w_path), samples

    def _owned(self, s, user: User | None, namespace: str, name: str) -> Adapter:
        if user is None:
            raise AuthenticationError("this needs an API token (Authorization: Bearer ...)")
        a = self._visible(repo.get_adapter_for_update(s, namespace, name), user, namespace, name)
        if a.owner_id != user.id:
            raise PermissionDeniedError(f"only the owner of {namespace}/{name} can change or delete it")
        return a

    def patch(self, user: User | None, namespace: str, name: str, *, description: str | None = None,
              tags: Sequence[str] | None = None, visibility: str | None = None,
              license: str | None = None) -> Adapter:
        """Change description, tags, visibility or license (owner only); re-embeds when the text changes."""
        desc = v.check_description(description) if description is not None else None
        tag_list = v.check_tags(list(tags)) if tags is not None else None
        vis = v.check_visibility(visibility) if visibility is not None else None
        lic = v.check_license(license) if license is not None else None
        with self.sessions() as s:
            cur = self._owned(s, user, namespace, name)
        new_desc = desc if desc is not None else cur.description
        new_tags = tag_list if tag_list is not None else list(cur.tags)
        embedding = None
        if new_desc != cur.description or new_tags != list(cur.tags):
            embedding = self.search.embed_adapter(namespace, name, new_desc, new_tags)
        with self.sessions.begin() as s:
            a = self._owned(s, user, namespace, name)
            a.description, a.tags = new_desc, new_tags
            if vis is not None:
                a.visibility = vis
            if lic is not None:
                a.license = lic
            if embedding is not None:
                for col, value in stored_vector(embedding, self.embedding_model).items():
                    setattr(a, col, value)
            s.flush()
            s.refresh(a)
        self.search.allowed_cache.invalidate()  # visibility, license or tags may have changed
        if embedding is not None:
            self.search.upsert(a.id, embedding)
        return a

    def delete(self, user: User | None, namespace: str, name: str) -> None:
        """Delete an adapter and all its versions (owner only). Blobs no longer used go at ``fsck --repair``."""
        with self.sessions.begin() as s:
            a = self._owned(s, user, namespace, name)
            adapter_id = a.id
            s.delete(a)
        self.search.remove(adapter_id)
