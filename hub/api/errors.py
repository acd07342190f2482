"""The one translation point from errors to HTTP: one status per error code, one JSON shape.

Every error response is ``{"error": {"code": str, "message": str, "details": object}}``, for domain
errors, request validation errors, unknown routes and unexpected failures alike (a browser asking for an
unknown page outside /api and /v1 gets the web UI's HTML 404 page instead).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Callable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from hub.core.errors import LoomError

log = logging.getLogger("loom.api")

#: the HTML answer to a browser asking for a page that does not exist (None: the JSON error)
NotFoundPage = Callable[[Request], Response | None]

STATUS_BY_CODE = {
    "not_found": 404,
    "unknown_name": 404,
    "invalid_input": 422,
    "invalid_adapter": 422,
    "unsupported_feature": 422,
    "incompatible": 422,
    "conflict": 409,
    "ambiguous": 409,
    "payload_too_large": 413,
    "unauthenticated": 401,
    "forbidden": 403,
    "storage_error": 500,
    "storage_unavailable": 503,
    "cluster_unavailable": 503,
    "upstream_error": 502,
    "context_length_exceeded": 400,
    "rate_limited": 429,
    "too_many_requests": 429,
    "request_cancelled": 499,  # nginx's "client closed request": only ever logged, the client is gone
    "loom_error": 500,  # the base class, never raised itself: a bare one is a bug
}
HTTP_CODES = {400: "bad_request", 401: "unauthenticated", 403: "forbidden", 404: "not_found",
              405: "method_not_allowed", 409: "conflict", 413: "payload_too_large", 422: "invalid_input",
              429: "too_many_requests"}


def error_body(code: str, message: str, details: object = None) -> dict:
    return {"error": {"code": code, "message": message, "details": details if details is not None else {}}}


def status_for(exc: LoomError) -> int:
    """The HTTP status of a domain error. Every code has one (a meta-test checks); an unmapped code is a bug,
    answered 500 and logged, never silently a 4xx."""
    status = STATUS_BY_CODE.get(exc.code)
    if status is None:
        log.error("error code %r has no HTTP status in STATUS_BY_CODE; answering 500", exc.code)
        return 500
    return status


def error_response(status: int, code: str, message: str, details: object = None,
                   headers: dict | None = None) -> JSONResponse:
    """The one error shape as a response (for middlewares that answer before any route)."""
    return JSONResponse(error_body(code, message, details), status_code=status, headers=headers)


_json = error_response


def _details(exc: LoomError) -> dict:
    return {k: (v if isinstance(v, str | int | float | bool | type(None) | list | dict) else str(v))
            for k, v in exc.details.items()}


def _domain_cause(exc: BaseException | None, depth: int = 0) -> LoomError | None:
    """A LoomError behind ``exc`` (its cause chain, through exception groups of task groups), if any."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, LoomError):
        return exc
    if isinstance(exc, BaseExceptionGroup):
        for sub in exc.exceptions:
            if found := _domain_cause(sub, depth + 1):
                return found
    return _domain_cause(exc.__cause__ or exc.__context__, depth + 1)


async def handle_error(request: Request, exc: Exception, not_found_page: NotFoundPage | None = None) -> Response:
    """Map any exception to the one error shape (an unknown route asked for by a browser: ``not_found_page``'s
    HTML page, when it gives one)."""
    if isinstance(exc, StarletteHTTPException | BaseExceptionGroup):
        exc = _domain_cause(exc) or exc  # e.g. the upload limit hit while FastAPI parsed the multipart body
    if isinstance(exc, LoomError):
        headers = {"WWW-Authenticate": "Bearer"} if exc.code == "unauthenticated" else None
        status = status_for(exc)
        retry_after = exc.details.get("retry_after") if exc.code == "upstream_error" else None
        if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
            # the upstream (the Hugging Face Hub) asked us to wait: pass that on to our caller
            status, headers = 503, {"Retry-After": str(max(1, math.ceil(retry_after)))}
        wait = exc.details.get("retry_after") if exc.code in ("rate_limited", "too_many_requests") else None
        if isinstance(wait, int | float) and not isinstance(wait, bool):
            headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        return _json(status, exc.code, exc.message, _details(exc), headers)
    if isinstance(exc, RequestValidationError):
        errs = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")}
                for e in exc.errors()]
        first = errs[0] if errs else {"loc": [], "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"])
        return _json(422, "invalid_input", f"{where}: {first['msg']}" if where else first["msg"], {"errors": errs})
    if isinstance(exc, StarletteHTTPException):
        code = HTTP_CODES.get(exc.status_code, "http_error")
        msg = exc.detail if isinstance(exc.detail, str) else code
        if exc.status_code == 404 and msg == "Not Found":
            msg = f"no route {request.method} {request.url.path}"
            if not_found_page is not None and (page := not_found_page(request)) is not None:
                return page
        return _json(exc.status_code, code, msg, {}, getattr(exc, "headers", None))
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return _json(500, "internal_error", "internal server error", {})


def install(app: FastAPI, not_found_page: NotFoundPage | None = None) -> None:
    """Register the one handler for every error class the app can meet (``not_found_page``: the web UI's 404
    page for browsers)."""
    handler = functools.partial(handle_error, not_found_page=not_found_page) if not_found_page else handle_error
    for cls in (LoomError, RequestValidationError, StarletteHTTPException, Exception):
        app.add_exception_handler(cls, handler)
