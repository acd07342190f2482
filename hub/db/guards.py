"""A database-level guard: NUL bytes never reach the database, on SQLite or PostgreSQL.

PostgreSQL cannot store a NUL byte in text (psycopg raises ``DataError``, a 500), SQLite stores it silently: the
same input behaved differently on the two databases. :func:`install_nul_guard` checks every statement's
parameters just before it is sent (reads and writes, from the API, the CLI or a job) and raises
:class:`InvalidInputError` naming the column or parameter instead. JSON columns are checked as the JSON text they
are sent as (an escaped ``\\u0000``). The API refuses NUL bytes earlier still (``hub.api.guards``), naming the
request field; this guard is the net under every other path.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Engine, event

from hub.core.errors import InvalidInputError

#: ``\u0000`` as JSON text writes it: preceded by an even number of backslashes (an odd one is a literal ``\u``)
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")
#: what a user knows a column by
_FIELD_NAMES = {"model_card": "README.md"}


def _field(name: str) -> str:
    base = re.sub(r"_\d+$", "", name)
    return _FIELD_NAMES.get(base, base)


def _has_nul(value: Any) -> bool:
    """A NUL in a text parameter, in JSON text, or in a JSON value the driver serialises itself (psycopg's
    ``Json`` wrapper keeps the Python object in ``.obj``)."""
    if isinstance(value, str):
        return "\x00" in value or ("\\u0000" in value and bool(_JSON_NUL.search(value)))
    if isinstance(value, bytes | int | float | bool) or value is None:
        return False
    stack = [getattr(value, "obj", value)]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            if "\x00" in v:
                return True
        elif isinstance(v, dict):
            stack.extend(v.keys())
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return False


def _check(params: Any, names: Sequence[str] | None) -> None:
    if isinstance(params, Mapping):
        items: Sequence[tuple[str, Any]] = list(params.items())
    elif isinstance(params, Sequence) and not isinstance(params, str | bytes):
        items = [(names[i] if names and i < len(names) else f"parameter {i + 1}", v) for i, v in enumerate(params)]
    else:
        return
    for name, value in items:
        if _has_nul(value):
            field = _field(str(name))
            raise InvalidInputError(f"{field} contains a NUL byte (\\x00), which cannot be stored", field=field)


def _before_cursor_execute(conn: Any, cursor: Any, statement: str, parameters: Any, context: Any,
                           executemany: bool) -> None:
    compiled = getattr(context, "compiled", None)
    names = getattr(compiled, "positiontup", None)
    for params in (parameters if executemany else [parameters]):
        _check(params, names)


def install_nul_guard(engine: Engine) -> None:
    """Refuse (InvalidInputError, naming the field) any statement parameter holding a NUL byte."""
    if not event.contains(engine, "before_cursor_execute", _before_cursor_execute):
        event.listen(engine, "before_cursor_execute", _before_cursor_execute)
