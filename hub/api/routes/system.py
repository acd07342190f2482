"""Health, metrics and the caller's identity."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from hub.api.deps import HubDep, UserDep
from hub.api.schemas import Health, WhoAmI
from hub.services.jobs import worker_health

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, operation_id="healthz", summary="Liveness, DB reachability and job workers (degraded while one is down)")
def healthz(hub: HubDep, request: Request) -> Health:
    with hub.engine.connect() as c:
        c.execute(text("SELECT 1"))
    idx = hub.search._index  # noqa: SLF001 - report the size only if it is already loaded
    healthy, workers = worker_health(hub.workers, _pool_status(request))
    return Health(status="ok" if healthy else "degraded", database=hub.engine.dialect.name,
                  adapters_indexed=len(idx) if idx is not None else None, workers=workers)


def _pool_status(request: Request) -> dict[str, Any] | None:
    """The status of the job workers ``loom serve`` supervises next to this app, if it does."""
    pool = getattr(request.app.state, "worker_pool", None)
    return pool.status() if pool is not None else None


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics (text format)",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(hub: HubDep, request: Request) -> Response:
    worker_health(hub.workers, _pool_status(request), hub.metrics)
    return Response(generate_latest(hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/whoami", response_model=WhoAmI, operation_id="whoami", summary="The user of the token")
def whoami(user: UserDep) -> WhoAmI:
    return WhoAmI(user=user.name if user else None)
