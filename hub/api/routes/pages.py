"""The web UI: server-rendered HTML pages (Jinja2 templates and static assets from the ``web`` package).

Pages call the same services as the REST API and resolve the viewer with the same token check
(``hub.users.authenticate``), from an HttpOnly cookie set by ``POST /signin``. Writes (publish) are
made by the pages' JavaScript against the REST API with the token kept in ``localStorage``, so the
cookie never authorises a state change other than signing in and out. Domain errors become an HTML
error page with the status the API would give.
"""

from __future__ import annotations

import functools
import mimetypes
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, Query, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from fastapi.routing import APIRoute

from hub.api.deps import HubDep, get_hub
from hub.api.errors import status_for
from hub.api.guards import INT64_MAX
from hub.api.routes.adapters import filters_dep
from hub.core.errors import (
    AuthenticationError,
    InvalidInputError,
    LoomError,
    NotFoundError,
    PermissionDeniedError,
)
from hub.db.models import User
from hub.services.search import AdapterFilters

COOKIE = "loom_token"
COOKIE_MAX_AGE = 30 * 24 * 3600
PER_PAGE = 10
MAX_SEARCH_RESULTS = 100  # = hub.services.search.MAX_K
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       "object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")


@functools.cache
def web_dir() -> Path:
    """The folder of the ``web`` package (templates/ and static/)."""
    import web

    return Path(web.__file__).resolve().parent


@functools.cache
def templates() -> Any:
    """The Jinja2 environment of the pages (autoescaped), built on first use."""
    from fastapi.templating import Jinja2Templates

    t = Jinja2Templates(directory=str(web_dir() / "templates"))
    t.env.filters["filesize"] = _filesize
    return t


def _filesize(n: int | None) -> str:
    if n is None:
        return ""
    size = float(n)
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1024 or unit == "GB":
            return f"{int(size)} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"  # pragma: no cover


def page_user(request: Request, hub: HubDep) -> User | None:
    """The signed-in viewer from the ``loom_token`` cookie; None when absent or no longer valid."""
    token = request.cookies.get(COOKIE)
    if not token:
        return None
    try:
        return hub.users.authenticate(token)
    except AuthenticationError:
        request.state.stale_token = True
        return None


PageUser = Annotated[User | None, Depends(page_user)]


def render(request: Request, template: str, context: dict[str, Any], status: int = 200) -> HTMLResponse:
    """Render ``template`` with the common context (viewer, nav) and the pages' security headers."""
    ctx = {"request": request, "user": getattr(request.state, "page_user", None),
           "stale_token": getattr(request.state, "stale_token", False), "active": "", **context}
    resp = templates().TemplateResponse(request, template, ctx, status_code=status)
    resp.headers["Content-Security-Policy"] = CSP
    resp.headers["X-Content-Type-Options"] = "nosniff"
    resp.headers["Referrer-Policy"] = "same-origin"
    if ctx["user"] is not None:  # pages of a signed-in viewer may show private adapters: never cache them
        resp.headers["Cache-Control"] = "private, no-store"
    return resp


class PageRoute(APIRoute):
    """A route whose domain errors render the HTML error page (same status codes as the API)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def guarded(request: Request) -> Response:
            try:
                return await handler(request)
            except LoomError as e:
                if isinstance(e, AuthenticationError):
                    request.state.stale_token = True
                return render(request, "error.html", {"status": status_for(e), "message": e.message},
                              status=status_for(e))

        return guarded


router = APIRouter(include_in_schema=False, route_class=PageRoute, tags=["pages"])

#: the paths of the APIs (REST and OpenAI-compatible): their errors are JSON whoever asks
API_PREFIXES = ("/api/", "/v1/")


def error_page(request: Request, status: int, message: str) -> Response | None:
    """The HTML error page for a browser (it asks for text/html) at a path outside the APIs; None (the JSON
    error) for any other client."""
    path = request.url.path
    if path in ("/api", "/v1") or path.startswith(API_PREFIXES) or "text/html" not in request.headers.get("accept", ""):
        return None
    _viewer(request, page_user(request, request.app.state.hub))
    return render(request, "error.html", {"status": status, "message": message}, status=status)


def not_found_page(request: Request) -> Response | None:
    """The HTML 404 page for a browser at an unknown path outside the APIs; None (the JSON error) for the rest."""
    return error_page(request, 404, f"There is no page at {request.url.path}.")


def _viewer(request: Request, user: User | None) -> User | None:
    request.state.page_user = user
    return user


def _int_param(raw: str | None, field: str, errors: dict[str, str], minimum: int = 1,
               maximum: int = INT64_MAX) -> int | None:
    """``raw`` as a whole number in ``[minimum, maximum]`` (the database's int64 by default); else None and the
    field's message in ``errors``."""
    if raw is None or raw.strip() == "":
        return None
    try:
        value = int(raw)
    except ValueError:
        errors[field] = f"must be a whole number, got {raw!r}"
        return None
    if value < minimum:
        errors[field] = f"must be at least {minimum}, got {value}"
        return None
    if value > maximum:
        errors[field] = f"must be at most {maximum}, got {value}"
        return None
    return value


@router.get("/", response_class=HTMLResponse, operation_id="page_search")
def search_page(request: Request, hub: HubDep, user: PageUser, q: str = "", base_model: str = "",
                tag: str = "", license: str = "", min_rank: str = "", max_rank: str = "",
                page: str = "1", rank: str = "") -> HTMLResponse:
    """Home: semantic search when ``q`` is given, else the newest visible adapters; filters and paging.

    ``rank``: ``""`` (the hub's default), ``"rerank"`` (reorder with the reranker) or ``"cosine"`` (embedding only).
    """
    _viewer(request, user)
    errors: dict[str, str] = {}
    lo = _int_param(min_rank, "min_rank", errors)
    hi = _int_param(max_rank, "max_rank", errors)
    page_no = _int_param(page, "page", errors, maximum=INT64_MAX // PER_PAGE) or 1  # its offset fits int64
    if lo is not None and hi is not None and lo > hi:
        errors["max_rank"] = f"must be at least the minimum rank ({lo})"
    modes: dict[str, bool | None] = {"": None, "rerank": True, "cosine": False}  # the Ranking choice -> rerank
    if rank not in modes:
        errors["rank"] = f"must be 'rerank' or 'cosine', got {rank!r}"
    rerank = modes.get(rank)
    q = q.strip()
    rows: list[dict[str, Any]] = []
    total: int | None = None
    has_next = False
    weak = reranked = False
    if not errors:
        f = filters_dep(base_model.strip() or None, tag.strip() or None, license.strip() or None, None, lo, hi, None)
        start = (page_no - 1) * PER_PAGE
        try:
            if q:
                want = min(MAX_SEARCH_RESULTS, start + PER_PAGE + 1)
                hits = hub.search.search(user, q, want, f, rerank=rerank) if start < MAX_SEARCH_RESULTS else []
                hub.metrics.searches.inc()
                reranked = any(h.rerank_score is not None for h in hits)
                rows = [{"adapter": h.adapter, "score": h.score, "exact": h.exact, "match": h.match}
                        for h in hits[start:start + PER_PAGE]]
                weak = not any(h.match == "good" for h in hits)
                has_next = len(hits) > start + PER_PAGE
            else:
                items, total = hub.adapters.list(user, f, offset=start, limit=PER_PAGE)
                rows = [{"adapter": a, "score": None, "exact": False, "match": None} for a in items]
                has_next = start + PER_PAGE < total
        except InvalidInputError as e:
            field = str(e.details.get("field") or "q")
            errors["rank" if field == "rerank" else field] = e.message
    params = {"q": q, "base_model": base_model, "tag": tag, "license": license, "min_rank": min_rank,
              "max_rank": max_rank, "rank": rank}
    base_models = sorted({b.model_id for b in hub.base_models.list()})
    return render(request, "search.html", {
        "active": "search", "params": params, "rows": rows, "total": total, "page": page_no, "has_next": has_next,
        "errors": errors, "base_models": base_models, "per_page": PER_PAGE, "weak": weak,
        "threshold": hub.search.match_threshold, "rerank_available": hub.search.rerank_available,
        "reranked": reranked,
        "query_string": {k: v for k, v in params.items() if v},
    }, status=422 if errors else 200)


def _lineage_rows(edges: list[dict]) -> list[dict[str, Any]]:
    out = []
    for e in edges:
        label = e.get("version")
        href = None
        if label and "@" in label:
            full, number = label.rsplit("@", 1)
            href = f"/a/{full}?version={number}"
        out.append({"label": label or "(not visible)", "href": href, "method": e.get("method"),
                    "weight": e.get("weight")})
    return out


@router.get("/a/{namespace}/{name}", response_class=HTMLResponse, operation_id="page_adapter")
def adapter_page(request: Request, hub: HubDep, user: PageUser, namespace: str, name: str,
                 version: str | None = None) -> HTMLResponse:
    """An adapter: model card, versions, files, lineage, snippets and the try-it box."""
    from web.render import render_markdown, split_front_matter

    _viewer(request, user)
    adapter = hub.adapters.get(user, namespace, name)
    versions = sorted(hub.adapters.versions(user, namespace, name), key=lambda v: v.number, reverse=True)
    if not versions:
        raise NotFoundError(f"adapter {namespace}/{name} has no versions yet")
    errors: dict[str, str] = {}
    number = _int_param(version, "version", errors)
    if errors:
        raise InvalidInputError(f"version {errors['version']}", field="version", value=version)
    selected = next((v for v in versions if v.number == number), None) if number else versions[0]
    if selected is None:
        raise NotFoundError(f"adapter {namespace}/{name} has no version {number}")
    lineage = hub.adapters.lineage(user, namespace, name, selected.number)
    if adapter.kind != "adapter":  # a router or a generator: its own page, card and actions
        from hub.api.routes.artifact_pages import artifact_context

        return render(request, "artifact.html", artifact_context(
            request, user, adapter, versions, selected, _lineage_rows(lineage.parents),
            _lineage_rows(lineage.children)))
    meta, body = split_front_matter(selected.model_card)
    from markupsafe import Markup

    base_url = str(request.base_url).rstrip("/")
    files = [{"name": fn, "size": int(info["size"]), "sha256": info["key"],
              "url": f"/api/v1/adapters/{namespace}/{name}/files/{fn}?version={selected.number}"}
             for fn, info in sorted((selected.files or {}).items())]
    return render(request, "adapter.html", {
        "adapter": adapter, "versions": versions, "selected": selected, "files": files,
        "card_html": Markup(render_markdown(body)),  # noqa: S704 - rendered with raw HTML escaped
        "card_meta": {k: v for k, v in meta.items() if isinstance(v, str | int | float)},
        "parents": _lineage_rows(lineage.parents), "children": _lineage_rows(lineage.children),
        "base_url": base_url, "full_name": f"{namespace}/{name}", "folder": f"./{namespace}-{name}",
        "is_owner": user is not None and user.id == adapter.owner_id,
        "base_pullable": _base_pullable(hub, selected.base_model),
    })


def _base_pullable(hub: Any, model_id: str | None) -> bool:
    """Whether ``loom base pull`` can fetch this base from the hub (it holds its weights)."""
    try:
        return bool(model_id) and bool(hub.base_files.list(model_id))
    except NotFoundError:
        return False


@router.get("/publish", response_class=HTMLResponse, operation_id="page_publish")
def publish_page(request: Request, user: PageUser) -> HTMLResponse:
    """The publish form (it submits to ``POST /api/v1/adapters`` from JavaScript)."""
    _viewer(request, user)
    return render(request, "publish.html", {"active": "publish", "namespace": user.name if user else ""})


@router.get("/signin", response_class=HTMLResponse, operation_id="page_signin")
def signin_page(request: Request, user: PageUser) -> HTMLResponse:
    _viewer(request, user)
    return render(request, "signin.html", {"active": "signin", "errors": {}})


def _same_origin(request: Request) -> None:
    """Refuse cross-site form posts (login CSRF): an ``Origin`` header, when sent, must be this host."""
    origin = request.headers.get("origin")
    if origin and origin != "null":
        from urllib.parse import urlsplit

        if urlsplit(origin).netloc != request.url.netloc:
            raise PermissionDeniedError(f"cross-site form post from {origin} refused")
    elif origin == "null":
        raise PermissionDeniedError("form post from an opaque origin refused")


@router.post("/signin", response_class=HTMLResponse, operation_id="page_signin_submit")
def signin_submit(request: Request, token: Annotated[str, Form()] = "") -> Response:
    """Check the token like the API does; on success set the HttpOnly session cookie and go home."""
    _same_origin(request)
    hub = get_hub(request)
    token = token.strip()
    try:
        if not token:
            raise AuthenticationError("paste an API token (from `loom token create USER`)")
        user = hub.users.authenticate(token)
    except AuthenticationError as e:
        _viewer(request, None)
        return render(request, "signin.html", {"active": "signin", "errors": {"token": e.message}}, status=401)
    assert user is not None
    resp = RedirectResponse("/", status_code=303)
    resp.set_cookie(COOKIE, token, max_age=COOKIE_MAX_AGE, httponly=True, samesite="lax", path="/",
                    secure=request.url.scheme == "https")
    return resp


@router.post("/signout", operation_id="page_signout")
def signout(request: Request) -> Response:
    _same_origin(request)
    resp = RedirectResponse("/", status_code=303)
    resp.delete_cookie(COOKIE, path="/")
    return resp


@router.get("/jobs", response_class=HTMLResponse, operation_id="page_jobs")
def jobs_page(request: Request, user: PageUser) -> HTMLResponse:
    """The caller's jobs, loaded by JavaScript from ``GET /api/v1/jobs`` when the hub has it."""
    _viewer(request, user)
    return render(request, "jobs.html", {"active": "jobs"})


@router.get("/compose", response_class=HTMLResponse, operation_id="page_compose")
def compose_page(request: Request, hub: HubDep, user: PageUser, source: Annotated[list[str] | None, Query()] = None,
                 task: str = "") -> HTMLResponse:
    """Compose: a task description or chosen adapters -> ``POST /api/v1/compositions``, then the job's progress."""
    _viewer(request, user)
    try:
        from hub.services.compositions import describe

        methods = describe()
    except ImportError:  # a hub built without the merging engine: only what the API may still accept
        methods = [{"name": "auto", "summary": "pick a method from the sources"}]
    items, _ = hub.adapters.list(user, None, offset=0, limit=200)
    bases = sorted({b.model_id for b in hub.base_models.list()} | {a.base_model for a in items if a.base_model})
    return render(request, "compose.html", {"active": "compose", "methods": methods, "base_models": bases,
                                            "sources": [s for s in (source or []) if s.strip()][:16],
                                            "task": task})


@router.get("/generate", response_class=HTMLResponse, operation_id="page_generate")
def generate_page(request: Request, hub: HubDep, user: PageUser, source: str = "",
                  generator: str = "") -> HTMLResponse:
    """Generate from a description (``POST /api/v1/generations``) or move an adapter to another base
    (``POST /api/v1/transfers``), then the job's progress."""
    _viewer(request, user)
    generators, _ = hub.adapters.list(user, AdapterFilters(kind="generator"), offset=0, limit=200)
    bases = sorted({b.model_id for b in hub.base_models.list()})
    return render(request, "generate.html", {"active": "generate", "generators": generators, "base_models": bases,
                                             "source": source.strip()[:200], "generator": generator.strip()[:200]})


@router.get("/playground", response_class=HTMLResponse, operation_id="page_playground")
def playground_page(request: Request, hub: HubDep, user: PageUser, model: str = "auto") -> HTMLResponse:
    """Prompt -> answer through ``POST /v1/chat/completions``, with the adapters used and gate weights."""
    _viewer(request, user)
    items, _ = hub.adapters.list(user, None, offset=0, limit=200)
    servable = sorted(a.full_name for a in items if a.kind != "generator")  # a generator answers no request
    models = ["auto", *sorted({b.model_id for b in hub.base_models.list()}), *servable]
    return render(request, "playground.html", {"active": "playground", "models": models, "model": model,
                                               "max_tokens": hub.settings.inference_max_tokens})


@router.get("/bases", response_class=HTMLResponse, operation_id="page_bases")
def bases_page(request: Request, hub: HubDep, user: PageUser) -> HTMLResponse:
    """Registered base models (where their weights came from) and a form to add one (``POST /api/v1/base-models``)."""
    _viewer(request, user)
    return render(request, "bases.html", {"active": "bases", "bases": hub.base_models.list()})


@router.get("/b/{model_id:path}", response_class=HTMLResponse, operation_id="page_base")
def base_page(request: Request, hub: HubDep, user: PageUser, model_id: str) -> HTMLResponse:
    """A base model: where its weights came from and, when the hub holds them, its files to download."""
    _viewer(request, user)
    base = hub.base_models.get(model_id)
    try:
        files = hub.base_files.list(model_id)
    except NotFoundError:
        files = None
    return render(request, "base_model.html", {"active": "bases", "base": base, "files": files,
                                                "base_url": str(request.base_url).rstrip("/")})


@router.get("/static/{path:path}", operation_id="page_static")
def static(path: str) -> Response:
    """A file of ``web/static`` (never outside it)."""
    root = (web_dir() / "static").resolve()
    target = (root / path).resolve()
    if not target.is_relative_to(root) or not target.is_file():
        raise NotFoundError(f"no static file {path!r}")
    media = mimetypes.guess_type(target.name)[0] or "application/octet-stream"
    return FileResponse(target, media_type=media, headers={"Cache-Control": "public, max-age=300",
                                                           "X-Content-Type-Options": "nosniff"})
