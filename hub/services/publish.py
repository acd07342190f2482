"""Publishing: the one path by which every artifact version enters the registry.

Adapters (uploads, imports, compositions, generated and transferred adapters), routers and
generators all go through :meth:`Publisher.publish`. An adapter arrives as :class:`PublishFiles`
(a PEFT folder: config, weights, optional card and samples), validated against its base model; a
router or a generator as :class:`BundleFiles` (a JSON manifest beside a safetensors file).

All or nothing: blobs are content-addressed and written first; the artifact row, the version row and
the lineage edges are then written in a single transaction. If anything fails after the blobs are
written, the transaction rolls back and nothing is visible; the unreferenced blobs are collected by
``loom fsck --repair``. Re-publishing content identical to an existing version of the same artifact
returns that version (``created=False``, HTTP 200) instead of adding a duplicate. A name belongs to
the user who published it first, and keeps its kind.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Literal

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidAdapterError,
    InvalidInputError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from hub.core.files import CONFIG_NAME, README_NAME, REQUIRED_FILES, SAMPLES_NAME, WEIGHTS_NAME
from hub.core.provenance import Provenance
from hub.db.models import Adapter, AdapterVersion, User
from hub.repositories import adapters as repo
from hub.services import validation as v
from hub.services.cards import model_card
from hub.services.search_text import stored_vector
from hub.services.validation import article

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.adapter import LoraAdapter
    from hub.services.base_models import BaseModelService
    from hub.services.metrics import Metrics
    from hub.services.search import SearchService
    from hub.storage import BlobStore

MAX_CONFIG_BYTES = 1024 * 1024


@dataclass
class Staged:
    """An upload copied into the blob store's temp area, hashed, not yet visible."""

    path: Path
    sha256: str
    size: int


@dataclass
class PublishFiles:
    """The files of an adapter version. ``weights`` is a path (copied) or an already :class:`Staged` file."""

    config: bytes
    weights: Path | Staged
    readme: bytes | None = None
    samples: bytes | None = None


@dataclass(frozen=True)
class BundleFiles:
    """A router or generator version: ``manifest`` (JSON) beside ``tensors`` (a safetensors file).

    ``config`` is what the version shows as its configuration (preset or method and its settings).
    """

    kind: Literal["router", "generator"]
    manifest: bytes
    tensors: Path
    base_model: str
    config: dict[str, Any]
    base_revision: str | None = None


@dataclass
class PublishResult:
    adapter: Adapter
    version: AdapterVersion
    created: bool
    warnings: list[str] = field(default_factory=list)


@dataclass
class _Content:
    """A validated version, ready to store: its files (content first), what its row records."""

    kind: str
    files: dict[str, bytes | Staged]
    base_model: str
    base_revision: str | None
    config: dict[str, Any]
    rank: int = 0
    ranks: dict[str, int] | None = None
    target_modules: list[str] | None = None
    warnings: list[str] = field(default_factory=list)

    def sha(self, name: str) -> str:
        f = self.files[name]
        return f.sha256 if isinstance(f, Staged) else hashlib.sha256(f).hexdigest()

    @property
    def content_sha(self) -> str:
        """sha256 over the kind's required files (name and sha256 each): cards and samples do not count."""
        return hashlib.sha256("".join(f"{n}:{self.sha(n)}\n" for n in REQUIRED_FILES[self.kind]).encode()).hexdigest()

    @property
    def size(self) -> int:
        return sum(f.size if isinstance(f, Staged) else len(f) for f in self.files.values())


def read_adapter(config: bytes, weights: Path, max_bytes: int) -> LoraAdapter:
    """Validate an adapter's config + safetensors (header before tensors) into a LoraAdapter."""
    from safetensors.torch import load_file

    from hub.core.peft_io import adapter_from_state, parse_config
    from hub.core.safetensors_check import check_safetensors_header

    cfg = parse_config(config)
    check_safetensors_header(weights, max_bytes=max_bytes, label=WEIGHTS_NAME)  # not the upload's temp file name
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as e:  # noqa: BLE001
        raise InvalidAdapterError(f"{WEIGHTS_NAME} could not be read: {e}") from None
    return adapter_from_state(cfg, tensors, require_base_model=True)


def check_owner(row: Adapter, user: User, kind: str | None = None) -> None:
    """Refuse a new version of ``row`` by anyone but its owner, or of another kind than its own.

    Raises:
        ConflictError: another user's private name (neither the name nor its owner is revealed).
        PermissionDeniedError: another user's name, or a name that holds another kind of artifact.
    """
    if row.owner_id != user.id:
        if row.visibility == "private":
            raise ConflictError("cannot publish to that name: it is taken", field="name")
        raise PermissionDeniedError(
            f"{row.namespace}/{row.name} belongs to {row.owner.name}; only its owner can publish new versions"
        )
    if kind is not None and row.kind != kind:
        raise PermissionDeniedError(f"{row.namespace}/{row.name} is {article(row.kind)}, not {article(kind)}; choose "
                                    "another name", field="name")


class Publisher:
    """Stage uploads and publish versions of every artifact kind.

    Args:
        sessions: the DB session factory. blobs: the blob store. search: embeds and indexes adapters.
        metrics: counts publishes. base_models: shape checks against registered bases.
        max_upload_bytes: the size limit of one version. embedding_model: recorded beside embeddings.
    """

    def __init__(self, sessions: sessionmaker[Session], blobs: BlobStore, search: SearchService, metrics: Metrics,
                 base_models: BaseModelService, *, max_upload_bytes: int, embedding_model: str) -> None:
        self.sessions, self.blobs, self.search, self.metrics = sessions, blobs, search, metrics
        self.base_models = base_models
        self.max_upload_bytes, self.embedding_model = max_upload_bytes, embedding_model

    def stage(self, stream: BinaryIO, max_bytes: int | None = None, what: str = WEIGHTS_NAME) -> Staged:
        """Copy an upload stream into the store's temp area while hashing it, refusing it past ``max_bytes``."""
        limit = self.max_upload_bytes if max_bytes is None else max_bytes
        out, tmp = self.blobs.temp_file()
        h = hashlib.sha256()
        size = 0
        try:
            with out:
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLargeError(f"{what} is over the upload limit of {limit} bytes", limit=limit)
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # durable before it is renamed into the store
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Staged(tmp, h.hexdigest(), size)

    def check_can_publish(self, user: User, name: str, kind: str = "adapter") -> None:
        """Refuse early (before any work) a name that ``user`` may not publish ``kind`` under.

        Raises:
            InvalidInputError: a malformed name. PermissionDeniedError: another user's namespace.
            ConflictError / PermissionDeniedError: see :func:`check_owner`.
        """
        ns, nm = v.check_namespace(user.name, name)
        with self.sessions() as s:
            row = repo.get_adapter(s, ns, nm)
            if row is not None:
                check_owner(row, user, kind)

    def publish(
        self,
        user: User | None,
        name: str,
        files: PublishFiles | BundleFiles,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        license: str | None = None,
        visibility: str | None = None,
        source: str = "upload",
        provenance: Provenance | None = None,
    ) -> PublishResult:
        """Publish ``files`` as a new version of ``name`` (created on first publish, owned by ``user``).

        Raises:
            AuthenticationError: no user.
            InvalidInputError / InvalidAdapterError / UnsupportedFeatureError: bad name, metadata or files.
            IncompatibleAdaptersError: shapes that do not fit the registered base model.
            PayloadTooLargeError: over the configured size limit.
            PermissionDeniedError: a namespace other than the user's own.
            ConflictError / PermissionDeniedError: the name belongs to another user or holds another kind.
            NotFoundError: a lineage parent of ``provenance`` that does not exist.
        """
        staged: list[Staged] = [files.weights] if isinstance(files, PublishFiles) and isinstance(files.weights,
                                                                                                Staged) else []
        try:  # staged uploads are consumed (moved into the store) or deleted, whatever happens
            if user is None:
                raise AuthenticationError("publishing needs an API token (Authorization: Bearer ...)")
            ns, nm = v.check_namespace(user.name, name)
            meta = _Meta(description=v.check_description(description) if description is not None else None,
                         tags=v.check_tags(list(tags)) if tags is not None else None,
                         license=v.check_license(license),
                         visibility=v.check_visibility(visibility) if visibility is not None else None)
            content = self._adapter(files, staged) if isinstance(files, PublishFiles) else self._bundle(files, staged)
            return self._publish(user, ns, nm, content, meta, files, source, provenance)
        finally:
            for st in staged:
                st.path.unlink(missing_ok=True)

    # -- validation per kind -------------------------------------------------------------------------
    def _stage_path(self, path: Path, staged: list[Staged], what: str) -> Staged:
        with open(path, "rb") as f:
            st = self.stage(f, self.max_upload_bytes, what)
        staged.append(st)
        return st

    def _adapter(self, files: PublishFiles, staged: list[Staged]) -> _Content:
        limit = self.max_upload_bytes
        weights = files.weights if isinstance(files.weights, Staged) else self._stage_path(files.weights, staged,
                                                                                            WEIGHTS_NAME)
        total = weights.size + len(files.config) + len(files.readme or b"") + len(files.samples or b"")
        if total > limit:
            raise PayloadTooLargeError(f"upload is {total} bytes, over the limit of {limit} bytes", limit=limit)
        if len(files.config) > MAX_CONFIG_BYTES:
            raise InvalidAdapterError(f"{CONFIG_NAME} is over {MAX_CONFIG_BYTES} bytes")
        if files.readme is not None and len(files.readme) > v.MAX_README_BYTES:
            raise PayloadTooLargeError(f"{README_NAME} is over {v.MAX_README_BYTES} bytes")
        if files.samples is not None:
            v.parse_samples(files.samples)
        adapter = read_adapter(files.config, weights.path, limit)
        base_id = str(adapter.base_model)
        warnings: list[str] = []
        base = self.base_models.find(base_id, adapter.spec.base_revision)
        if base is not None:
            from hub.core.compat import check_against_base

            check_against_base(adapter, self.base_models.shapes(base), f"{base.model_id}@{base.revision}")
        else:
            warnings.append(f"base model {base_id} is not registered; shapes were not checked against it")
        stored: dict[str, bytes | Staged] = {CONFIG_NAME: files.config, WEIGHTS_NAME: weights}
        if files.samples is not None:
            stored[SAMPLES_NAME] = files.samples
        return _Content("adapter", stored, base_id, adapter.spec.base_revision, json.loads(files.config),
                        rank=adapter.r, ranks=adapter.ranks, target_modules=adapter.target_modules, warnings=warnings)

    def _bundle(self, files: BundleFiles, staged: list[Staged]) -> _Content:
        manifest_name, tensors_name = REQUIRED_FILES[files.kind]
        try:
            json.loads(files.manifest)
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as e:
            raise InvalidInputError(f"{manifest_name} is not valid JSON: {e}") from None
        tensors = self._stage_path(files.tensors, staged, tensors_name)
        return _Content(files.kind, {manifest_name: files.manifest, tensors_name: tensors}, files.base_model,
                        files.base_revision, dict(files.config))

    # -- the common path -------------------------------------------------------------------------------
    def _publish(self, user: User, ns: str, nm: str, content: _Content, meta: _Meta, files: PublishFiles | BundleFiles,
                 source: str, provenance: Provenance | None) -> PublishResult:
        with self.sessions() as s:  # read-only pre-checks: refuse early, before any blob is written
            existing = repo.get_adapter(s, ns, nm)
            if existing is not None:
                check_owner(existing, user, content.kind)
                same = repo.find_version_by_sha(s, existing, content.content_sha)
                if same is not None:
                    return PublishResult(existing, same, False, ["identical content: returned the existing version"])
        description = meta.description if meta.description is not None else (existing.description if existing else "")
        tags = meta.tags if meta.tags is not None else list(existing.tags if existing else [])
        embedding: bytes | None = None
        if content.kind == "adapter" and (
                existing is None or existing.description != description or list(existing.tags) != tags
                or existing.embedding is None or existing.embedding_model != self.embedding_model):
            embedding = self.search.embed_adapter(ns, nm, description, tags)
        prov = provenance.to_dict() if provenance is not None else None
        readme = ""
        if isinstance(files, PublishFiles):
            readme = files.readme.decode("utf-8", "replace") if files.readme is not None else model_card(
                f"{ns}/{nm}", description, content.base_model,
                meta.license or (existing.license if existing else None), tags, prov)
            content.files[README_NAME] = readme.encode("utf-8")

        file_map = self._store(content)  # 1) blobs (content-addressed; harmless if the transaction fails)

        def record(s: Session) -> tuple[Adapter, AdapterVersion]:  # 2) one transaction
            row = repo.get_adapter_for_update(s, ns, nm)
            if row is None:
                row = Adapter(namespace=ns, name=nm, owner_id=user.id, visibility=meta.visibility or "public",
                              kind=content.kind, description=description, tags=tags, license=meta.license,
                              downloads=0)
                s.add(row)
                s.flush()
            else:
                check_owner(row, user, content.kind)
                row.description, row.tags = description, tags
                if meta.license is not None:
                    row.license = meta.license
                if meta.visibility is not None:
                    row.visibility = meta.visibility
            if embedding is not None:
                for col, value in stored_vector(embedding, self.embedding_model).items():
                    setattr(row, col, value)
            version = AdapterVersion(
                adapter_id=row.id, number=repo.max_version_number(s, row.id) + 1, sha256=content.content_sha,
                size=content.size, rank=content.rank, ranks=content.ranks, target_modules=content.target_modules,
                base_model=content.base_model, base_revision=content.base_revision, config=content.config,
                files=file_map, model_card=readme, samples_key=file_map.get(SAMPLES_NAME, {}).get("key"),
                provenance=prov, source=source, created_by_id=user.id)
            s.add(version)
            s.flush()
            if provenance is not None:
                repo.add_lineage(s, version, provenance)
            row.latest_version, row.latest_rank, row.base_model = version.number, content.rank, content.base_model
            s.flush()
            s.refresh(row)
            return row, version

        row, version = self._transaction(record, f"{ns}/{nm}")
        if row.embedding is not None and content.kind == "adapter":
            self.search.upsert(row.id, row.embedding)
        self.metrics.publishes.inc()
        return PublishResult(row, version, True, content.warnings)

    def _store(self, content: _Content) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, f in content.files.items():
            r = self.blobs.adopt(f.path, f.sha256, f.size) if isinstance(f, Staged) else self.blobs.put_bytes(f)
            out[name] = {"key": r.key, "size": r.size}
        return out

    def _transaction(self, work: Callable[[Session], tuple[Adapter, AdapterVersion]],
                     full: str) -> tuple[Adapter, AdapterVersion]:
        """Run ``work`` in one transaction, retried when a concurrent publish took the same name or number."""
        for attempt in range(3):
            try:
                with self.sessions.begin() as s:
                    return work(s)
            except IntegrityError:
                if attempt == 2:
                    raise ConflictError(f"{full} was published concurrently; retry") from None
            except OperationalError as e:  # SQLite: a read transaction could not upgrade to a write
                if "locked" not in str(e).lower() or attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        raise AssertionError("unreachable")  # pragma: no cover


@dataclass(frozen=True)
class _Meta:
    """Validated metadata of a publish (None: keep what the artifact has)."""

    description: str | None
    tags: list[str] | None
    license: str | None
    visibility: str | None
