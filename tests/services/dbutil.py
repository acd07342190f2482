"""Throwaway databases for the registry, API and CLI tests: SQLite files and PostgreSQL databases.

Every PostgreSQL database has a unique name (``loom_t_<random>``), so parallel xdist workers never
share one; each is dropped when its test ends. A migrated template is made once per session and
copied per test (``CREATE DATABASE ... TEMPLATE``), which is much faster than migrating each time.
"""

from __future__ import annotations

import os
import shutil
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import create_engine, text

PG_ADMIN_URL = os.environ.get("LOOM_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def pg_url(dbname: str) -> str:
    return PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + dbname


def _admin_exec(sql: str) -> None:
    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            c.execute(text(sql))
    finally:
        eng.dispose()


def create_pg_database(template: str | None = None) -> str:
    """Create a uniquely named PostgreSQL database (optionally copied from ``template``); return its name.

    The name carries its creation time (``loom_t_<epoch>_<random>``) so runs that were killed before
    their cleanup can be swept by :func:`sweep_stale_databases`.
    """
    name = f"loom_t_{int(time.time())}_{uuid.uuid4().hex[:8]}"
    _admin_exec(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def sweep_stale_databases(older_than_s: float = 6 * 3600) -> None:
    """Drop test databases left behind by killed runs (older than ``older_than_s``, no connections)."""
    eng = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with eng.connect() as c:
            names = c.execute(text(
                "SELECT datname FROM pg_database d WHERE datname LIKE 'loom\\_t\\_%' AND NOT EXISTS "
                "(SELECT 1 FROM pg_stat_activity a WHERE a.datname = d.datname)")).scalars().all()
            for name in names:
                parts = name.split("_")
                if len(parts) == 4 and parts[2].isdigit() and time.time() - int(parts[2]) > older_than_s:
                    c.execute(text(f'DROP DATABASE IF EXISTS "{name}"'))
    finally:
        eng.dispose()


def drop_pg_database(name: str) -> None:
    _admin_exec(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def empty_database(kind: str, tmp: Path) -> Iterator[str]:
    """An empty database of ``kind`` ("sqlite" or "postgresql"); yields its URL, drops it after."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp / f'empty-{uuid.uuid4().hex[:6]}.db'}"
        return
    name = create_pg_database()
    try:
        yield pg_url(name)
    finally:
        drop_pg_database(name)


class MigratedTemplates:
    """One migrated database per kind per session, copied for each test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self._sqlite: Path | None = None
        self._pg: str | None = None

    def _migrate(self, url: str) -> None:
        from hub.db import make_engine
        from hub.db.migrate import upgrade

        eng = make_engine(url)
        try:
            upgrade(eng)
        finally:
            eng.dispose()

    @contextmanager
    def database(self, kind: str, tmp: Path) -> Iterator[str]:
        if kind == "sqlite":
            if self._sqlite is None:
                self._sqlite = self.tmp / "template.db"
                self._migrate(f"sqlite:///{self._sqlite}")
            dest = tmp / f"loom-{uuid.uuid4().hex[:6]}.db"
            shutil.copy(self._sqlite, dest)
            yield f"sqlite:///{dest}"
            return
        if self._pg is None:
            sweep_stale_databases()
            self._pg = create_pg_database()
            self._migrate(pg_url(self._pg))
        name = create_pg_database(template=self._pg)
        try:
            yield pg_url(name)
        finally:
            drop_pg_database(name)

    def close(self) -> None:
        if self._pg is not None:
            drop_pg_database(self._pg)
