"""Base model queries (no commits)."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.db.models import BaseModel


def get_base(session: Session, model_id: str, revision: str | None = None) -> BaseModel | None:
    """The base ``model_id`` at ``revision``, or its most recently registered revision when None."""
    stmt = select(BaseModel).where(BaseModel.model_id == model_id)
    if revision is not None:
        stmt = stmt.where(BaseModel.revision == revision)
    return session.scalar(stmt.order_by(BaseModel.id.desc()).limit(1))


def list_bases(session: Session) -> list[BaseModel]:
    return list(session.scalars(select(BaseModel).order_by(BaseModel.model_id, BaseModel.id)))


def owners(session: Session, model_id: str) -> set[int | None]:
    """The owners of every registered revision of ``model_id`` (None: the operator's)."""
    return set(session.scalars(select(BaseModel.owner_id).where(BaseModel.model_id == model_id)))
