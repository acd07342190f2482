"""Publishing: validate an adapter upload, write its blobs, then record it in one DB transaction.

All or nothing: blobs are content-addressed and written first; the adapter row, the version row and
lineage edges are then written in a single transaction. If anything fails after the blobs are
written, the transaction rolls back and nothing is visible; the unreferenced blobs are collected by
``loom fsck --repair``. Re-publishing content identical to an existing version of the same adapter
returns that version (``created=False``, HTTP 200) instead of adding a duplicate.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.orm import Session

from hub.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidAdapterError,
    InvalidInputError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
)
from hub.core.files import CONFIG_NAME, README_NAME, SAMPLES_NAME, WEIGHTS_NAME
from hub.core.provenance import Provenance
from hub.db.models import Adapter, AdapterVersion, LineageEdge, User
from hub.repositories import adapters as repo
from hub.services import validation as v
from hub.services.cards import model_card
from hub.services.search import vector_hash

if TYPE_CHECKING:  # pragma: no cover
    from hub.core.adapter import LoraAdapter
    from hub.services.hub import Hub

MAX_CONFIG_BYTES = 1024 * 1024


@dataclass
class Staged:
    """An upload copied into the blob store's temp area, hashed, not yet visible."""

    path: Path
    sha256: str
    size: int


@dataclass
class PublishFiles:
    """The files of one upload. ``weights`` is a path (copied) or an already :class:`Staged` file."""

    config: bytes
    weights: Path | Staged
    readme: bytes | None = None
    samples: bytes | None = None


@dataclass
class PublishResult:
    adapter: Adapter
    version: AdapterVersion
    created: bool
    warnings: list[str] = field(default_factory=list)


def _read_adapter(config: bytes, weights: Path, max_bytes: int) -> LoraAdapter:
    """Validate config + safetensors (header before tensors) into a LoraAdapter."""
    from safetensors.torch import load_file

    from hub.core.peft_io import adapter_from_state, parse_config
    from hub.core.safetensors_check import check_safetensors_header

    cfg = parse_config(config)
    check_safetensors_header(weights, max_bytes=max_bytes)
    try:
        tensors = load_file(str(weights), device="cpu")
    except Exception as e:  # noqa: BLE001
        raise InvalidAdapterError(f"{WEIGHTS_NAME} could not be read: {e}") from None
    return adapter_from_state(cfg, tensors, require_base_model=True)


class Publisher:
    """The publish operation of :class:`hub.services.adapters.AdapterService`."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def stage(self, stream: BinaryIO, max_bytes: int | None = None) -> Staged:
        """Copy an upload stream into the store's temp area while hashing it, refusing it past ``max_bytes``."""
        limit = self.hub.settings.max_upload_bytes if max_bytes is None else max_bytes
        out, tmp = self.hub.blobs.temp_file()
        h = hashlib.sha256()
        size = 0
        try:
            with out:
                while chunk := stream.read(1024 * 1024):
                    size += len(chunk)
                    if size > limit:
                        raise PayloadTooLargeError(
                            f"{WEIGHTS_NAME} is over the upload limit of {limit} bytes", limit=limit
                        )
                    h.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())  # durable before it is renamed into the store
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return Staged(tmp, h.hexdigest(), size)

    def publish(
        self,
        user: User | None,
        name: str,
        files: PublishFiles,
        *,
        description: str | None = None,
        tags: Sequence[str] | None = None,
        license: str | None = None,
        visibility: str | None = None,
        kind: str = "adapter",
        source: str = "upload",
        provenance: Provenance | None = None,
    ) -> PublishResult:
        """Publish ``files`` as a new version of ``name`` (created on first publish, owned by ``user``).

        Raises:
            AuthenticationError: no user.
            InvalidInputError / InvalidAdapterError / UnsupportedFeatureError: bad name, metadata or files.
            IncompatibleAdaptersError: shapes that do not fit the registered base model.
            PayloadTooLargeError: over the configured size limit.
            PermissionDeniedError: the name belongs to another user.
        """
        staged = files.weights if isinstance(files.weights, Staged) else None
        try:  # a staged upload is consumed (moved into the store) or deleted, whatever happens
            if user is None:
                raise AuthenticationError("publishing needs an API token (Authorization: Bearer ...)")
            ns, nm = v.parse_name(name)
            desc = v.check_description(description) if description is not None else None
            tag_list = v.check_tags(list(tags)) if tags is not None else None
            lic = v.check_license(license)
            vis = v.check_visibility(visibility) if visibility is not None else None
            if kind not in ("adapter", "router", "generator"):
                raise InvalidInputError(f"kind must be adapter, router or generator, got {kind!r}", field="kind")
            limit = self.hub.settings.max_upload_bytes
            if staged is None:
                with open(files.weights, "rb") as f:
                    staged = self.stage(f, limit)
            return self._publish(user, ns, nm, files, staged, desc, tag_list, lic, vis, kind, source, provenance)
        finally:
            if staged is not None:
                staged.path.unlink(missing_ok=True)

    def _publish(self, user: User, ns: str, nm: str, files: PublishFiles, staged: Staged, desc: str | None,
                 tag_list: list[str] | None, lic: str | None, vis: str | None, kind: str, source: str,
                 provenance: Provenance | None) -> PublishResult:
        hub = self.hub
        limit = hub.settings.max_upload_bytes
        total = staged.size + len(files.config) + len(files.readme or b"") + len(files.samples or b"")
        if total > limit:
            raise PayloadTooLargeError(f"upload is {total} bytes, over the limit of {limit} bytes", limit=limit)
        if len(files.config) > MAX_CONFIG_BYTES:
            raise InvalidAdapterError(f"{CONFIG_NAME} is over {MAX_CONFIG_BYTES} bytes")
        if files.readme is not None and len(files.readme) > v.MAX_README_BYTES:
            raise PayloadTooLargeError(f"{README_NAME} is over {v.MAX_README_BYTES} bytes")
        if files.samples is not None:
            v.parse_samples(files.samples)
        adapter = _read_adapter(files.config, staged.path, limit)
        warnings: list[str] = []
        base_id = str(adapter.base_model)
        base = hub.base_models.find(base_id, adapter.spec.base_revision)
        if base is not None:
            from hub.core.compat import check_against_base

            check_against_base(adapter, hub.base_models.shapes(base), f"{base.model_id}@{base.revision}")
        else:
            warnings.append(f"base model {base_id} is not registered; shapes were not checked against it")
        config_sha = hashlib.sha256(files.config).hexdigest()
        content_sha = hashlib.sha256(
            f"{CONFIG_NAME}:{config_sha}\n{WEIGHTS_NAME}:{staged.sha256}\n".encode()
        ).hexdigest()

        with hub.sessions() as s:  # read-only pre-checks: refuse early, before any blob is written
            existing = repo.get_adapter(s, ns, nm)
            if existing is not None:
                self._check_owner(existing, user)
                same = repo.find_version_by_sha(s, existing, content_sha)
                if same is not None:
                    return PublishResult(existing, same, False, ["identical content: returned the existing version"])
        description = desc if desc is not None else (existing.description if existing else "")
        tag_final = tag_list if tag_list is not None else list(existing.tags if existing else [])
        embedding: bytes | None = None
        if existing is None or existing.description != description or list(existing.tags) != tag_final \
                or existing.embedding is None or existing.embedding_model != hub.settings.embedding_model:
            embedding = hub.search.embed_adapter(ns, nm, description, tag_final)
        prov = provenance.to_dict() if provenance is not None else None
        readme = files.readme.decode("utf-8", "replace") if files.readme is not None else model_card(
            f"{ns}/{nm}", description, base_id, lic or (existing.license if existing else None), tag_final, prov
        )

        # 1) blobs (content-addressed; harmless if the transaction below fails)
        blobs = hub.blobs
        stored = {CONFIG_NAME: blobs.put_bytes(files.config)}
        stored[WEIGHTS_NAME] = blobs.adopt(staged.path, staged.sha256, staged.size)
        stored[README_NAME] = blobs.put_bytes(readme.encode("utf-8"))
        if files.samples is not None:
            stored[SAMPLES_NAME] = blobs.put_bytes(files.samples)
        file_map = {n: {"key": r.key, "size": r.size} for n, r in stored.items()}

        # 2) one transaction (retried when a concurrent publish took the same name or number first)
        for attempt in range(3):
            try:
                row, version = self._record(user, ns, nm, vis, kind, description, tag_final, lic, embedding, adapter,
                                            files, file_map, content_sha, readme, prov, source, provenance, base_id)
                break
            except IntegrityError:
                if attempt == 2:
                    raise ConflictError(f"{ns}/{nm} was published concurrently; retry") from None
            except OperationalError as e:  # SQLite: a read transaction could not upgrade to a write
                if "locked" not in str(e).lower() or attempt == 2:
                    raise
                time.sleep(0.05 * (attempt + 1))
        if row.embedding is not None:
            hub.search.upsert(row.id, row.embedding)
        hub.metrics.publishes.inc()
        return PublishResult(row, version, True, warnings)

    def _record(self, user: User, ns: str, nm: str, vis: str | None, kind: str, description: str,
                tag_final: list[str], lic: str | None, embedding: bytes | None, adapter: LoraAdapter,
                files: PublishFiles, file_map: dict, content_sha: str, readme: str, prov: dict | None, source: str,
                provenance: Provenance | None, base_id: str) -> tuple[Adapter, AdapterVersion]:
        """Write the adapter row, the version and its lineage in one transaction."""
        hub = self.hub
        with hub.sessions.begin() as s:
            row = repo.get_adapter_for_update(s, ns, nm)
            if row is None:
                row = Adapter(namespace=ns, name=nm, owner_id=user.id, visibility=vis or "public", kind=kind,
                              description=description, tags=tag_final, license=lic, downloads=0)
                s.add(row)
                s.flush()
            else:
                self._check_owner(row, user)
                row.description, row.tags = description, tag_final
                if lic is not None:
                    row.license = lic
                if vis is not None:
                    row.visibility = vis
            if embedding is not None:
                row.embedding, row.embedding_hash = embedding, vector_hash(embedding)
                row.embedding_model = hub.settings.embedding_model
            version = self._insert_version(s, row, adapter, files, file_map, content_sha, readme, prov, source, user)
            if provenance is not None:
                self._add_lineage(s, version, provenance)
            row.latest_version, row.latest_rank, row.base_model = version.number, adapter.r, base_id
            s.flush()
            s.refresh(row)
        return row, version

    @staticmethod
    def _check_owner(row: Adapter, user: User) -> None:
        if row.owner_id != user.id:
            if row.visibility == "private":
                raise ConflictError(f"the name {row.namespace}/{row.name} is taken")
            raise PermissionDeniedError(
                f"{row.namespace}/{row.name} belongs to {row.owner.name}; only its owner can publish new versions"
            )

    def _insert_version(self, s: Session, row: Adapter, adapter: LoraAdapter, files: PublishFiles,
                        file_map: dict, content_sha: str, readme: str, prov: dict | None, source: str,
                        user: User) -> AdapterVersion:
        config = json.loads(files.config)
        version = AdapterVersion(
            adapter_id=row.id,
            number=repo.max_version_number(s, row.id) + 1,
            sha256=content_sha,
            size=sum(int(f["size"]) for f in file_map.values()),
            rank=adapter.r,
            ranks=adapter.ranks,
            target_modules=adapter.target_modules,
            base_model=str(adapter.base_model),
            base_revision=adapter.spec.base_revision,
            config=config,
            files=file_map,
            model_card=readme,
            samples_key=file_map.get(SAMPLES_NAME, {}).get("key"),
            provenance=prov,
            source=source,
            created_by_id=user.id,
        )
        s.add(version)
        s.flush()
        return version

    @staticmethod
    def _add_lineage(s: Session, child: AdapterVersion, provenance: Provenance) -> None:
        for p in provenance.parents:
            pns, pnm = v.parse_name(p.name)
            parent_adapter = repo.get_adapter(s, pns, pnm)
            number = int(p.version) if p.version not in (None, "") else None
            parent = repo.get_version(s, parent_adapter, number) if parent_adapter else None
            if parent is None:
                raise NotFoundError(f"lineage parent {p.name}@{p.version or 'latest'} does not exist")
            s.add(LineageEdge(parent_id=parent.id, child_id=child.id, method=provenance.method,
                              recipe=provenance.recipe, weight=p.weight))
