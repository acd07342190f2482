"""What every ``loom`` command shares: the root options, the consoles, the hub client, the local
service container, JSON and table output, ``key=value`` parameters.

Remote commands call :func:`client`; local commands get the service container from
:func:`local_hub` and nowhere else. Nothing heavy is imported here at module level (no torch, no
SQLAlchemy, no httpx), so ``loom --help`` stays fast.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn
from rich.table import Table

if TYPE_CHECKING:  # pragma: no cover
    from hub.client import LoomClient
    from hub.services.container import Hub
    from hub.settings import Settings

#: stdout (results) and stderr (progress, warnings, errors).
console = Console()
err_console = Console(stderr=True)

#: The ``--json`` flag of every listing.
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]


@dataclass
class RootOptions:
    """The options given before the command (``loom --server URL --token T --data-dir D ...``)."""

    server: str | None = None
    token: str | None = None
    data_dir: Path | None = None


#: The root options of the running invocation; set by the ``loom`` callback before any command runs.
options = RootOptions()


def settings() -> Settings:
    """The deployment's settings (environment ``LOOM_*``), with ``--data-dir`` applied."""
    from hub.settings import get_settings

    overrides: dict[str, Any] = {}
    if options.data_dir is not None:
        overrides["data_dir"] = options.data_dir
    return get_settings(**overrides)


def server_url() -> str:
    """The hub the remote commands talk to: ``--server``, else ``LOOM_SERVER_URL``'s setting."""
    return options.server or settings().server_url


def client() -> LoomClient:
    """An HTTP client of the hub at :func:`server_url`, with ``--token`` (use it as a context manager)."""
    from hub.client import LoomClient

    return LoomClient(server_url(), options.token)


def missing_database() -> Path | None:
    """The configured SQLite file when it does not exist (there is no hub there yet), else None."""
    from sqlalchemy.engine import make_url

    u = make_url(settings().resolved_database_url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    path = Path(u.database)
    return None if path.exists() else path


def require_database() -> None:
    """Refuse a command that reads or checks a hub where there is none: one line, and nothing is created (opening
    the hub would create an empty ``./loom-data``)."""
    from hub.core.errors import NotFoundError

    if (path := missing_database()) is not None:
        raise NotFoundError(f"no hub database at {path}: set LOOM_DATA_DIR (or --data-dir) to the hub's data "
                            "directory (`loom serve` or `loom db upgrade` creates a hub)", path=str(path))


def local_hub(migrate: bool = True, *, existing: bool = False) -> Hub:
    """The service container of local commands, on ``LOOM_DATA_DIR`` / ``LOOM_DATABASE_URL``.

    The one place the CLI builds services (use it as a context manager).

    Args:
        migrate: apply database migrations up to head first.
        existing: the command only reads or checks a hub: where there is none, :func:`require_database` refuses
            instead of creating an empty data directory.
    """
    from hub.services.container import Hub

    if existing:
        require_database()
    return Hub(settings(), migrate=migrate)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on plain stdout (no colour codes or wrapping)."""
    print(json.dumps(obj, indent=2, default=str))


def print_error(message: str, label: str = "error") -> None:
    """Print ``label: message`` as ONE line on stderr (newlines folded, no wrapping, no markup in it)."""
    one_line = " ".join(part.strip() for part in str(message).splitlines() if part.strip())
    err_console.print(f"[red]{escape(label)}:[/] {escape(one_line)}", soft_wrap=True)


def transfer_bar(label: str) -> Progress:
    """A transient byte-count progress bar on stderr (uploads and downloads)."""
    # off when stderr is not a terminal: it drew nothing there but left a blank line before an error
    return Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=err_console,
                    transient=True, disable=not err_console.is_terminal)


def table(title: str, columns: Sequence[str], rows: Iterable[Sequence[str]], **column_options: Any) -> Table:
    """A table titled ``title`` with ``columns`` (each given ``column_options``) and ``rows``."""
    t = Table(title=title)
    for col in columns:
        t.add_column(col, **column_options)
    for r in rows:
        t.add_row(*r)
    return t


def print_listing(items: list[dict[str, Any]], json_out: bool, title: str, columns: Sequence[str],
                  row: Callable[[dict[str, Any]], Sequence[str]], **column_options: Any) -> None:
    """Print ``items`` as JSON (``--json``), else as a :func:`table` with one ``row(item)`` per item."""
    if json_out:
        print_json(items)
    else:
        console.print(table(title, columns, map(row, items), **column_options))


def adapter_table(rows: list[dict[str, Any]], title: str | None = None, scores: list[float] | None = None,
                  width: int | None = None, marks: list[str] | None = None) -> Table:
    """A table of adapters as the API lists them (with a score column for search hits), fitted to ``width``
    (default: the terminal's): narrower terminals drop downloads and tags (< 120 columns), rank (< 90) and the
    base model (< 70) instead of squeezing every column to nothing; long names and descriptions wrap. Each
    score is followed by its entry in ``marks`` (e.g. ``"weak"``)."""
    from rich import box

    width = width or console.width
    drop = {c for c, below in (("dl", 120), ("tags", 120), ("rank", 90), ("base model", 70)) if width < below}
    t = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    if scores is not None:
        t.add_column("score", justify="right", no_wrap=True)
    columns = [c for c in ("name", "ver", "rank", "base model", "tags", "dl", "description") if c not in drop]
    for col in columns:
        if col in ("name", "base model", "tags"):
            t.add_column(col, overflow="fold", max_width=36 if col == "name" else 28)
        elif col == "description":
            t.add_column(col, overflow="fold", ratio=1, min_width=12)
        else:
            t.add_column(col, no_wrap=True, justify="right")
    for i, a in enumerate(rows):
        cell = {"name": a["id"] + (" (private)" if a["visibility"] == "private" else ""),
                "ver": str(a["latest_version"]), "rank": str(a.get("rank") or ""),
                "base model": a.get("base_model") or "", "tags": ", ".join(a["tags"]), "dl": str(a["downloads"]),
                "description": (a["description"] or "")[:120]}
        score = [f"{scores[i]:.3f}" + (f" {marks[i]}" if marks and marks[i] else "")] if scores is not None else []
        t.add_row(*score, *(cell[c] for c in columns))
    return t


def parse_params(items: list[str], option: str = "--param") -> dict[str, Any]:
    """``["k=2", "name=x"]`` -> ``{"k": 2, "name": "x"}`` (values parsed as JSON where they are JSON).

    Raises:
        typer.BadParameter: an item without ``=`` or without a key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise typer.BadParameter(f"{option} must be key=value, got {item!r}")
        try:
            out[key] = json.loads(raw)
        except json.JSONDecodeError:
            out[key] = raw
    return out
