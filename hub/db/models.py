"""SQLAlchemy 2 typed models of the registry.

Tables: users, api_tokens (sha256-hashed), adapters (``namespace/name`` unique), adapter_versions
(immutable, numbered 1, 2, ...), lineage_edges (parent version -> child version), base_models, leases
(one process at a time for hub-wide background work).
All timestamps are timezone-aware UTC. Every schema change needs an Alembic migration in
``migrations/versions`` (a test compares the metadata against ``upgrade head``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend (SQLite drops the zone; we put it back)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    """Declarative base with a naming convention so migrations name constraints stably."""

    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, list[Any]: JSON, datetime: UTCDateTime()}


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    tokens: Mapped[list[ApiToken]] = relationship(back_populates="user", cascade="all, delete-orphan")


class ApiToken(Base):
    """An API token; only its sha256 and a short prefix (for display) are stored."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    prefix: Mapped[str] = mapped_column(String(16))
    label: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column()
    revoked_at: Mapped[datetime | None] = mapped_column()

    user: Mapped[User] = relationship(back_populates="tokens", lazy="joined")


class Adapter(Base):
    """A named adapter (``namespace/name``) with its search embedding; content lives in versions."""

    __tablename__ = "adapters"
    __table_args__ = (UniqueConstraint("namespace", "name", name="uq_adapters_namespace_name"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    namespace: Mapped[str] = mapped_column(String(64))
    name: Mapped[str] = mapped_column(String(64))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    visibility: Mapped[str] = mapped_column(String(16), default="public")
    kind: Mapped[str] = mapped_column(String(16), default="adapter")
    description: Mapped[str] = mapped_column(Text, default="")
    tags: Mapped[list[Any]] = mapped_column(default=list)
    license: Mapped[str | None] = mapped_column(String(64))
    base_model: Mapped[str | None] = mapped_column(String(256), index=True)
    latest_version: Mapped[int] = mapped_column(Integer, default=0)
    latest_rank: Mapped[int | None] = mapped_column(Integer)
    embedding: Mapped[bytes | None] = mapped_column(LargeBinary)
    embedding_model: Mapped[str | None] = mapped_column(String(256))
    embedding_hash: Mapped[str | None] = mapped_column(String(16))
    downloads: Mapped[int] = mapped_column(BigInteger, default=0)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow, index=True)
    # when ``embedding`` was last stored; moves without ``updated_at`` when only the vector is redone (a background
    # re-embedding, ``fsck --repair``), so other processes' search indexes see the new vector
    embedded_at: Mapped[datetime | None] = mapped_column(index=True)

    owner: Mapped[User] = relationship(lazy="joined", innerjoin=True)
    versions: Mapped[list[AdapterVersion]] = relationship(
        back_populates="adapter", cascade="all, delete-orphan", order_by="AdapterVersion.number"
    )

    @property
    def full_name(self) -> str:
        return f"{self.namespace}/{self.name}"


class AdapterVersion(Base):
    """One immutable upload of an adapter. ``files`` maps file name -> {"key", "size"} in the blob store."""

    __tablename__ = "adapter_versions"
    __table_args__ = (UniqueConstraint("adapter_id", "number", name="uq_adapter_versions_adapter_id_number"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"), index=True)
    number: Mapped[int] = mapped_column(Integer)
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    rank: Mapped[int] = mapped_column(Integer)
    ranks: Mapped[dict[str, Any]] = mapped_column(default=dict)
    target_modules: Mapped[list[Any]] = mapped_column(default=list)
    base_model: Mapped[str] = mapped_column(String(256))
    base_revision: Mapped[str | None] = mapped_column(String(128))
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    files: Mapped[dict[str, Any]] = mapped_column(default=dict)
    model_card: Mapped[str] = mapped_column(Text, default="")
    samples_key: Mapped[str | None] = mapped_column(String(64))
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    source: Mapped[str] = mapped_column(String(512), default="upload")
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    adapter: Mapped[Adapter] = relationship(back_populates="versions")


class LineageEdge(Base):
    """parent version -> child version: how the child was made from the parent."""

    __tablename__ = "lineage_edges"
    __table_args__ = (
        UniqueConstraint("parent_id", "child_id", name="uq_lineage_edges_parent_id_child_id"),
        Index("ix_lineage_edges_child_id", "child_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    parent_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="CASCADE"))
    child_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="CASCADE"))
    method: Mapped[str] = mapped_column(String(64))
    recipe: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weight: Mapped[float | None] = mapped_column(Float)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class BaseModel(Base):
    """A registered base model: its config.json (for shape checks) and where its weights live."""

    __tablename__ = "base_models"
    __table_args__ = (UniqueConstraint("model_id", "revision", name="uq_base_models_model_id_revision"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    model_id: Mapped[str] = mapped_column(String(256), index=True)
    revision: Mapped[str] = mapped_column(String(128), default="main")
    config: Mapped[dict[str, Any]] = mapped_column(default=dict)
    weights: Mapped[str | None] = mapped_column(String(1024))
    #: where the weights came from (``hub.weights.ResolvedWeights.source``): a folder, a Hugging Face repo at a
    #: commit sha, or a converted GGUF file; None for bases registered without weights
    source: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    #: who registered it through the API (only they add revisions and see where its weights are); None: the
    #: operator (local commands, the demo) or a base registered before owners existed
    owner_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Lease(Base):
    """A named lease on hub-wide background work: ``holder`` runs it until ``expires_at`` unless it renews it
    (:mod:`hub.services.leases`); an expired lease is free, so a crashed holder blocks no one for long."""

    __tablename__ = "leases"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column()
