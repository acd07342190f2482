"""Helpers of the Hub-sync wiring tests."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import func, select

from tests.hf.conftest import card


def seed(fake_hub, repo_id: str, folder: Path, description: str = "Answers in French.", **kw) -> str:
    """Put a PEFT folder and a model card on the fake Hub in one commit; return the commit sha."""
    private, gated = kw.pop("private", False), kw.pop("gated", False)
    if repo_id not in fake_hub.state.repos:
        fake_hub.create_repo(repo_id, private=private, gated=gated)
    files: dict = {p.name: p for p in Path(folder).iterdir() if p.name != "README.md"}
    files["README.md"] = card(description, **kw)
    return fake_hub.commit(repo_id, files)


def counts(hub) -> dict[str, int]:
    """Rows in the tables an import writes."""
    from hub.db.hf import HfExport, HfImport
    from hub.db.models import Adapter, AdapterVersion

    with hub.sessions() as s:
        return {t.__tablename__: s.scalar(select(func.count()).select_from(t))
                for t in (Adapter, AdapterVersion, HfImport, HfExport)}


def leftovers(hub) -> list[str]:
    """Files left in the import/export staging area (must be none after any call)."""
    root = hub.settings.cache_dir / "hf"
    return sorted(p.name for p in root.rglob("*")) if root.exists() else []
