"""Router training ("train gates over these adapters") as a background job, and the router presets."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hub.api.deps import HubDep, WriterDep
from hub.api.routes.jobs import JobOut, job_out
from hub.services.router_training import RouterTrainRequest, presets

router = APIRouter(prefix="/api/v1", tags=["routers"])


class RouterTrainIn(BaseModel):
    """A router to train: a preset over expert adapters (in gate order), published as ``name``."""

    preset: str = Field(description="a trainable router preset, e.g. 'meteora' (GET /api/v1/routers/presets)")
    experts: list[str] = Field(description="['ns/name@version', ...] in bank order; version optional")
    name: str = Field(description="ns/name of the router artifact to publish")
    steps: int = Field(default=100, description="optimisation steps")
    params: dict[str, Any] = Field(default_factory=dict, description="the preset's config fields, e.g. {'k': 2}")
    train: dict[str, Any] = Field(default_factory=dict,
                                  description="lr, batch_size, max_length, weight_decay, warmup, seed, trainable")
    description: str | None = None
    recipe: str = Field(default="hub", description=(
        "hub: the settings that route on hub adapters (request-embedding + hashed-word gates, a supervised gate "
        "loss, per-preset fixes; README); paper: the preset's own defaults. params and train override either"))


@router.post("/routers", status_code=202, response_model=JobOut, operation_id="train_router",
             summary="Queue a router-training job over registered adapters (trained on their sample data)")
def train_router(hub: HubDep, user: WriterDep, body: RouterTrainIn) -> JobOut:
    req = RouterTrainRequest(preset=body.preset, experts=tuple(body.experts), name=body.name, steps=body.steps,
                             params=body.params, train=body.train, description=body.description,
                             recipe=body.recipe)
    job, dedup = hub.routers.submit(user, req)
    return job_out(job, dedup)


@router.get("/routers/presets", operation_id="list_router_presets",
            summary="Router presets: paper, granularity, whether trainable, config fields with defaults")
def list_presets() -> list[dict[str, Any]]:
    return presets()
