"""Apply Alembic migrations programmatically (``loom db upgrade|downgrade|current``, app start)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine

import migrations
from hub.core.errors import InvalidInputError

MIGRATIONS_DIR = Path(migrations.__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic config for the packaged migrations and the database at ``url``."""
    cfg = Config(str(MIGRATIONS_DIR / "alembic.ini"))
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def _run(engine: Engine, fn: str, revision: str) -> None:
    cfg = alembic_config(engine.url.render_as_string(hide_password=False))
    try:
        with engine.begin() as conn:
            cfg.attributes["connection"] = conn
            getattr(command, fn)(cfg, revision)
    except CommandError as e:  # a revision Alembic cannot resolve or reach: nothing was changed
        known = [r.revision for r in ScriptDirectory.from_config(cfg).walk_revisions()][::-1]
        what = (f"unknown migration revision {revision!r}" if f"identified by {revision!r}" in str(e)
                else f"cannot {fn} to {revision!r}: {e}")
        raise InvalidInputError(f"{what}; the revisions are {', '.join(known)} (head), base, or a step such as -1 "
                                "(`loom db current` shows where the database is)", field="revision", value=revision) from None


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Migrate the database of ``engine`` up to ``revision``."""
    _run(engine, "upgrade", revision)


def downgrade(engine: Engine, revision: str = "-1") -> None:
    """Migrate the database of ``engine`` down to ``revision`` (``base`` drops everything)."""
    _run(engine, "downgrade", revision)


def current(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head() -> str | None:
    """The newest revision shipped with this version of Loom."""
    return ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
