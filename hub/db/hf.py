"""Hugging Face sync records: which Hub commit each imported version came from, and each export's commit.

``hf_imports``: one row per (Loom adapter, Hub repo, commit sha) Loom has looked at. A commit that
changed nothing Loom stores (only the card, say) still gets a row, pointing at the version that
already holds its content, so a re-sync neither downloads it again nor adds a duplicate version.
``revision`` is the branch or tag the adapter tracks upstream (``main`` unless imported from another).

``hf_exports``: one row per push of a version to a Hub repo, with the commit sha the Hub returned.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ForeignKey, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.db.models import Base, utcnow


class HfImport(Base):
    __tablename__ = "hf_imports"
    __table_args__ = (
        UniqueConstraint("adapter_id", "repo_id", "sha", name="uq_hf_imports_adapter_id_repo_id_sha"),
        Index("ix_hf_imports_repo_id", "repo_id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    adapter_id: Mapped[int] = mapped_column(ForeignKey("adapters.id", ondelete="CASCADE"))
    version_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="CASCADE"), index=True)
    repo_id: Mapped[str] = mapped_column(String(200))
    revision: Mapped[str] = mapped_column(String(256), default="main")
    sha: Mapped[str] = mapped_column(String(40))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class HfExport(Base):
    __tablename__ = "hf_exports"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version_id: Mapped[int] = mapped_column(ForeignKey("adapter_versions.id", ondelete="CASCADE"), index=True)
    repo_id: Mapped[str] = mapped_column(String(200), index=True)
    commit_sha: Mapped[str] = mapped_column(String(40))
    created_by_id: Mapped[int | None] = mapped_column(ForeignKey("users.id", ondelete="SET NULL"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
