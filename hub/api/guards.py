"""Request guards in front of every route: malformed input is a 4xx naming the field, never a 500.

- :class:`RequestGuard` refuses, before any route runs, a NUL byte in the URL path, a query parameter or a
  JSON body's keys and strings (PostgreSQL cannot store one; the database guard :mod:`hub.db.guards` catches
  the other paths), an integer in a JSON body outside int64 (no database column holds one), and a JSON body
  nested deeper than :data:`MAX_JSON_DEPTH` (no request needs it; deep nesting exhausts recursion). A browser
  asking for a page (not /api or /v1) with a NUL byte in its URL gets the web UI's HTML error page instead.
- :class:`CatchAll` answers an unexpected exception with the one JSON error shape (500) and does not re-raise
  it, so the server keeps the client's keep-alive connection; a domain error escaping a middleware (the upload
  limit hit while a body streams in) gets its own status, without a traceback in the log.

Integer query parameters are capped in the routes (``le=INT64_MAX``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api import errors

INT64_MAX = 2**63 - 1
INT64_MIN = -(2**63)
MAX_JSON_DEPTH = 64
_LONG_INT = re.compile(rb"\d{19,}")
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
_BRACKET = re.compile(rb"[\[\]{}]")
_FORMS = (b"multipart/form-data", b"application/x-www-form-urlencoded")
#: the web UI's error page for a browser asking for a page (status, message), or None for the JSON error
ErrorPage = Callable[[Request, int, str], Response | None]


class GuardError(ValueError):
    """What is wrong with a request, and where (``field``)."""

    def __init__(self, message: str, field: str) -> None:
        super().__init__(message)
        self.message, self.field = message, field


def check_url(path: str, query_string: bytes) -> None:
    """Refuse a NUL byte in the (percent-decoded) path or in a query parameter's name or value."""
    if "\x00" in path:
        raise GuardError("the URL path contains a NUL byte (\\x00)", "path")
    if b"%00" in query_string.lower() or b"\x00" in query_string:
        for key, value in parse_qsl(query_string.decode("latin-1"), keep_blank_values=True):
            if "\x00" in key or "\x00" in value:
                name = key.replace("\x00", "\\x00")
                raise GuardError(f"query parameter {name} contains a NUL byte (\\x00)", name)


def json_depth(body: bytes) -> int:
    """How deep the arrays and objects of the JSON text ``body`` nest (strings skipped)."""
    depth = deepest = 0
    for m in _BRACKET.finditer(_STRING.sub(b'""', body)):
        if m.group() in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        else:
            depth -= 1
    return deepest


def check_json(body: bytes) -> None:
    """Refuse a JSON body nested too deep, a NUL byte in a key or string, or an integer outside int64.

    Cheap byte scans decide whether the body needs a look; only then is it parsed and walked (iteratively).
    Invalid JSON passes: the route answers it.
    """
    if body.count(b"[") + body.count(b"{") > MAX_JSON_DEPTH and json_depth(body) > MAX_JSON_DEPTH:
        raise GuardError(f"the JSON body nests deeper than {MAX_JSON_DEPTH} levels", "body")
    if b"\\u0000" not in body and not _LONG_INT.search(body):
        return
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError):
        return
    stack: list[tuple[str, Any]] = [("", doc)]
    while stack:
        where, value = stack.pop()
        if isinstance(value, dict):
            for k, v in value.items():
                at = f"{where}.{k}" if where else str(k)
                if "\x00" in k:
                    raise GuardError(f"a key of {where or 'the body'} contains a NUL byte (\\x00)", where or "body")
                stack.append((at, v))
        elif isinstance(value, list):
            stack.extend((f"{where}[{i}]", v) for i, v in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise GuardError(f"{where or 'the body'} contains a NUL byte (\\x00)", where or "body")
        elif isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
            raise GuardError(f"{where or 'the body'} is out of range (at most {INT64_MAX})", where or "body")


class RequestGuard:
    """ASGI middleware applying :func:`check_url` to every HTTP request and :func:`check_json` to JSON bodies."""

    def __init__(self, app: ASGIApp, page: ErrorPage | None = None) -> None:
        self.app = app
        self.page = page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            check_url(scope.get("path", ""), scope.get("query_string", b""))
        except GuardError as e:  # a browser asking for a page gets the web UI's error page, when there is one
            page = self.page(Request(scope), 422, e.message) if self.page is not None else None
            await (page or errors.error_response(422, "invalid_input", e.message, {"field": e.field}))(
                scope, receive, send)
            return
        ctype = dict(scope.get("headers", [])).get(b"content-type", b"").lower()
        if scope["method"] not in ("POST", "PUT", "PATCH") or ctype.startswith(_FORMS):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            msg = await receive()
            if msg["type"] != "http.request":
                break  # the client left
            chunks.append(msg.get("body", b""))
            if not msg.get("more_body", False):
                break
        body = b"".join(chunks)
        try:
            check_json(body)
        except GuardError as e:
            await _refuse(e, scope, receive, send)
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


async def _refuse(e: GuardError, scope: Scope, receive: Receive, send: Send) -> None:
    response = errors.error_response(422, "invalid_input", e.message, {"field": e.field})
    await response(scope, receive, send)


class CatchAll:
    """ASGI middleware: an exception that escapes the app becomes the one JSON error shape, and is not re-raised
    (Starlette's outermost handler re-raises, and the server then closes the keep-alive connection)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(msg: Message) -> None:
            nonlocal started
            if msg["type"] == "http.response.start":
                started = True
            await send(msg)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if started:  # a streamed response failed midway: nothing can be said any more; the server cuts it
                raise
            response = await errors.handle_error(Request(scope), exc)
            await response(scope, receive, send)
