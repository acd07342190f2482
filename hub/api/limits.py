"""Request body limits, applied before a route reads (or parses) anything.

:class:`BodyLimit` refuses a body over its limit with 413 while it streams in (by ``Content-Length`` when
sent, else by counting): multipart uploads (adapter weights) get ``max_upload_bytes`` plus some slack,
every other body (JSON) gets ``max_json_bytes``, so a huge prompt is refused before it is parsed,
tokenized or held in memory.
"""

from __future__ import annotations

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from hub.api import errors
from hub.core.errors import PayloadTooLargeError

UPLOAD_SLACK = 4 * 1024 * 1024  # multipart overhead and the small files beside the weights


class BodyLimit:
    """ASGI middleware: 413 for bodies over ``upload_limit`` (multipart) or ``json_limit`` (anything else).

    Args:
        app: the wrapped app. upload_limit: bytes of a multipart body. json_limit: bytes of another body.
    """

    def __init__(self, app: ASGIApp, upload_limit: int, json_limit: int | None = None) -> None:
        self.app, self.upload_limit = app, upload_limit
        self.json_limit = upload_limit if json_limit is None else json_limit

    def limit_for(self, scope: Scope) -> tuple[int, str]:
        """The limit of this request and the setting that sets it."""
        for k, v in scope.get("headers", []):
            if k == b"content-type" and v.lower().startswith(b"multipart/"):
                return self.upload_limit, "LOOM_MAX_UPLOAD_BYTES"
        return self.json_limit, "LOOM_MAX_JSON_BYTES"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        limit, setting = self.limit_for(scope)
        for k, v in scope.get("headers", []):
            if k == b"content-length" and v.isdigit() and int(v) > limit:
                body = errors.error_body("payload_too_large", f"request body is {int(v)} bytes, over the limit "
                                         f"of {limit} bytes ({setting})", {"limit": limit})
                response = JSONResponse(body, status_code=413)
                await response(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(f"request body is over the limit of {limit} bytes ({setting})",
                                               limit=limit)
            return msg

        await self.app(scope, counted, send)
