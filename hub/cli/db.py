"""``loom db upgrade|downgrade|current``: the database's migrations (local: ``LOOM_DATABASE_URL``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from hub.cli import common
from hub.cli.common import JsonOpt

app = typer.Typer(help="Database migrations (local).", no_args_is_help=True)


@contextmanager
def engine() -> Iterator[Any]:
    """A SQLAlchemy engine on the configured database, disposed afterwards."""
    from hub.db import make_engine

    eng = make_engine(common.settings().resolved_database_url)
    try:
        yield eng
    finally:
        eng.dispose()


@app.command("upgrade")
def db_upgrade(revision: Annotated[str, typer.Argument()] = "head") -> None:
    """Apply migrations up to REVISION (default head)."""
    from hub.db.migrate import current, upgrade

    with engine() as eng:
        upgrade(eng, revision)
        common.console.print(f"database at {current(eng)}")


@app.command("downgrade")
def db_downgrade(revision: Annotated[str, typer.Argument(help="e.g. -1 or base")] = "-1",
                 yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Revert migrations down to REVISION (a downgrade drops what the reverted migrations added: it asks first)."""
    from hub.db.migrate import current, downgrade

    common.require_database()
    with engine() as eng:
        if not yes:
            typer.confirm(f"downgrade the database at {eng.url.render_as_string(hide_password=True)} from "
                          f"{current(eng) or 'base'} to {revision}? Data the reverted migrations hold is lost",
                          abort=True)
        downgrade(eng, revision)
        common.console.print(f"database at {current(eng) or 'base (empty)'}")


@app.command("current")
def db_current(json_out: JsonOpt = False) -> None:
    """Show the database's migration revision and the newest one shipped."""
    from hub.db.migrate import current, head

    if common.missing_database() is not None:  # no hub there yet: say so without creating its file
        cur, hd = None, head()
    else:
        with engine() as eng:
            cur, hd = current(eng), head()
    if json_out:
        common.print_json({"current": cur, "head": hd})
    else:
        common.console.print(f"current: {cur or 'none'}  head: {hd}"
                             + ("" if cur == hd else "  (run `loom db upgrade`)"))
