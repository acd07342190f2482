"""The app factory. ``create_app(settings)`` builds the hub (engine, migrations, blob store, search)
and stores it on ``app.state.hub``; nothing is built at import time.
"""

from __future__ import annotations

import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request

from hub.api import errors
from hub.api.guards import CatchAll, RequestGuard
from hub.api.limits import UPLOAD_SLACK, BodyLimit
from hub.api.routes import (
    adapters,
    base_models,
    generation,
    hf,
    jobs,
    openai,
    pages,
    routers,
    search,
    system,
    tokens,
)
from hub.settings import Settings, get_settings


def create_app(settings: Settings | None = None, *, migrate: bool = True, hub: Any = None,
               embedder_factory: Callable[[str], Any] | None = None, warm_index: bool = True) -> FastAPI:
    """Build the Loom API.

    Args:
        settings: the deployment's settings (default: from the environment).
        migrate: apply Alembic migrations on start.
        hub: an existing :class:`hub.services.container.Hub` to serve (then ``settings`` and ``migrate`` are unused
            and the caller closes it).
        embedder_factory: builds the search embedder from the model name (tests).
        warm_index: load or rebuild the search index in the background on start.
    """
    from hub.services.container import Hub

    settings = settings or get_settings()
    own = hub is None
    the_hub = hub if hub is not None else Hub(settings, migrate=migrate, embedder_factory=embedder_factory)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        if warm_index:
            threading.Thread(target=_warm, args=(the_hub,), daemon=True, name="loom-index-warmup").start()
        yield
        inference = getattr(app.state, "inference", None)
        if inference is not None:
            inference.close()
        if own:
            the_hub.close()
        else:
            the_hub.search.save()

    app = FastAPI(title="Loom", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None,
                  description="A self-hosted hub for LoRA adapters: registry, semantic search, composition.")
    app.state.hub = the_hub
    errors.install(app, not_found_page=pages.not_found_page)
    _offline_docs(app)
    _documented_errors(app)
    # pages last: it serves "/" and /static; the OpenAI-compatible /v1 routes build the inference
    # service (and load models) only on first use.
    for r in (adapters.router, search.router, base_models.router, jobs.router, routers.router, generation.router,
              hf.router, openai.router, system.router, tokens.router, pages.router):
        app.include_router(r)

    @app.middleware("http")
    async def observe(request: Request, call_next: Callable) -> Any:
        t0 = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        the_hub.metrics.requests.labels(request.method, path, str(response.status_code)).inc()
        the_hub.metrics.latency.labels(path).observe(time.perf_counter() - t0)
        return response

    s = the_hub.settings
    app.add_middleware(RequestGuard, page=pages.error_page)  # NUL bytes, int64 and nesting: a 422 naming the field, before any route
    app.add_middleware(BodyLimit, upload_limit=s.max_upload_bytes + UPLOAD_SLACK, json_limit=s.max_json_bytes)
    app.add_middleware(CatchAll)  # outermost of ours: a JSON 500, and the keep-alive connection survives
    return app


def _offline_docs(app: FastAPI) -> None:
    """Swagger UI 5 at /docs from the files packaged in ``fastapi-offline``: nothing is fetched from a CDN."""
    from pathlib import Path

    import fastapi_offline
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse
    from fastapi.staticfiles import StaticFiles

    assets = Path(fastapi_offline.__file__).parent / "static"
    app.mount("/docs-assets", StaticFiles(directory=assets), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url or "/openapi.json", title="Loom API",
                                   swagger_js_url="/docs-assets/swagger-ui-bundle.js",
                                   swagger_css_url="/docs-assets/swagger-ui.css",
                                   swagger_favicon_url="/docs-assets/favicon.png")


def _documented_errors(app: FastAPI) -> None:
    """The OpenAPI document lists every error response of every operation (:mod:`hub.api.responses`)."""
    from fastapi.openapi.utils import get_openapi

    from hub.api.responses import document_errors

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(get_openapi(
                title=app.title, version=app.version, description=app.description, routes=app.routes))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def _warm(hub: Any) -> None:
    import logging

    try:
        hub.search.ensure_index()
    except Exception:  # noqa: BLE001 - search rebuilds on first use; never kill the server for it
        logging.getLogger("loom.api").exception("could not load the search index at start")
    if hub.search.rerank_available:  # load (the first time: convert) the reranker's model now, not in a search
        try:
            _ = hub.search.encoders.reranker
        except Exception:  # noqa: BLE001 - a reranked search reports the same error to its caller
            logging.getLogger("loom.api").exception("could not load the search reranker at start")
