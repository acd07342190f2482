"""Loom's database: SQLAlchemy 2 typed models and an engine/session factory (no engine at import)."""

from hub.db.engine import make_engine, make_session_factory
from hub.db.hf import HfExport, HfImport
from hub.db.jobs import Job, WorkerRecord
from hub.db.models import (
    Adapter,
    AdapterVersion,
    ApiToken,
    Base,
    BaseModel,
    Lease,
    LineageEdge,
    User,
)

__all__ = [
    "Adapter",
    "AdapterVersion",
    "ApiToken",
    "Base",
    "BaseModel",
    "HfExport",
    "HfImport",
    "Job",
    "Lease",
    "LineageEdge",
    "User",
    "WorkerRecord",
    "make_engine",
    "make_session_factory",
]
