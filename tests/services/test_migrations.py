"""Alembic: upgrade head on empty SQLite and PostgreSQL, no drift against the models, down and up again."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from hub.db import Base, make_engine
from hub.db.migrate import current, downgrade, head, upgrade
from tests.services.dbutil import empty_database


@pytest.mark.parametrize("kind", ["sqlite", "postgresql"])
def test_upgrade_no_drift_downgrade_upgrade(kind, tmp_path):
    with empty_database(kind, tmp_path) as url:
        eng = make_engine(url)
        try:
            assert current(eng) is None
            upgrade(eng)
            assert current(eng) == head()
            tables = set(inspect(eng).get_table_names())
            assert {"users", "api_tokens", "adapters", "adapter_versions", "lineage_edges", "base_models"} <= tables
            with eng.connect() as conn:
                diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), Base.metadata)
            assert diff == [], f"models and migrations differ: {diff}"
            downgrade(eng, "base")
            assert current(eng) is None
            assert set(inspect(eng).get_table_names()) - {"alembic_version"} == set()
            upgrade(eng)
            assert current(eng) == head()
        finally:
            eng.dispose()


def test_sqlite_pragmas(tmp_path):
    eng = make_engine(f"sqlite:///{tmp_path / 'p.db'}")
    try:
        with eng.connect() as c:
            assert c.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert c.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    finally:
        eng.dispose()
