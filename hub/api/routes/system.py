"""Health, metrics and the caller's identity."""

from __future__ import annotations

from fastapi import APIRouter, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from sqlalchemy import text

from hub.api.deps import HubDep, UserDep
from hub.api.schemas import Health, WhoAmI

router = APIRouter(tags=["system"])


@router.get("/healthz", response_model=Health, operation_id="healthz", summary="Liveness and DB reachability")
def healthz(hub: HubDep) -> Health:
    with hub.engine.connect() as c:
        c.execute(text("SELECT 1"))
    idx = hub.search._index  # noqa: SLF001 - report the size only if it is already loaded
    return Health(status="ok", database=hub.engine.dialect.name, adapters_indexed=len(idx) if idx is not None else None)


@router.get("/metrics", operation_id="metrics", summary="Prometheus metrics (text format)",
            responses={200: {"content": {"text/plain": {}}}})
def metrics(hub: HubDep) -> Response:
    return Response(generate_latest(hub.metrics.registry), media_type=CONTENT_TYPE_LATEST)


@router.get("/api/v1/whoami", response_model=WhoAmI, operation_id="whoami", summary="The user of the token")
def whoami(user: UserDep) -> WhoAmI:
    return WhoAmI(user=user.name if user else None)
