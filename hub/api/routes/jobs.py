"""Compositions ("an adapter for this task") and the jobs that build them."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from hub.api.deps import HubDep, UserDep, WriterDep
from hub.core.errors import AuthenticationError
from hub.services.compositions import CompositionRequest, describe
from hub.services.jobs import job_summary

router = APIRouter(prefix="/api/v1", tags=["compositions"])


class CompositionIn(BaseModel):
    """Either explicit ``sources`` (+ ``weights``, ``method``, ``params``) or a ``task`` + ``base_model``."""

    sources: list[str] = Field(default_factory=list, description="['ns/name@version', ...]; version optional")
    weights: list[float] | None = None
    task: str | None = Field(default=None, description="what the new adapter should do, in words")
    base_model: str | None = None
    method: str = Field(default="auto", description="a merge method name, 'auto', or a generation method: "
                        "'sg_lora' / 'icm_lora' (a task + base_model; params.generator, params.samples) or "
                        "'trans_lora' (one source moved to base_model)")
    params: dict[str, Any] = Field(default_factory=dict)
    k: int = Field(default=3, description="how many adapters to retrieve for a task")
    min_score: float | None = Field(default=None, description="minimum similarity of a retrieved adapter "
                                    "(default: the search's match threshold, LOOM_SEARCH_MATCH_THRESHOLD)")
    name: str | None = Field(default=None, description="ns/name of the result (default: yours, generated)")
    description: str | None = None
    tags: list[str] = Field(default_factory=list)
    visibility: str = "public"


class JobOut(BaseModel):
    id: str
    kind: str
    status: str
    owner: str | None
    request: dict[str, Any]
    recipe_hash: str | None
    progress: float
    message: str
    log: list[str]
    result: dict[str, Any] | None
    result_name: str | None = Field(default=None, description="ns/name@version of what the job published")
    error: dict[str, Any] | None
    cancel_requested: bool
    attempts: int
    created_at: str
    started_at: str | None
    finished_at: str | None
    worker: str | None = Field(default=None, description="the worker (host:pid) that runs or ran the job")
    position: int | None = Field(default=None, description="a queued job's place in its line (1: next)")
    ahead: list[dict[str, Any]] = Field(default_factory=list, description=(
        "what runs or waits ahead of a queued job: kind, status, progress (and id, for your own jobs)"))
    deduplicated: bool = False


def job_out(job: Any, dedup: bool = False) -> JobOut:
    """The API view of a job (``deduplicated``: an identical earlier job was returned)."""
    d = job_summary(job)
    d.pop("owner_id", None)
    return JobOut(**d, deduplicated=dedup)


@router.post("/compositions", status_code=202, response_model=JobOut, operation_id="create_composition",
             summary="Queue a composition job: merge given adapters, or build an adapter for a task description")
def create_composition(hub: HubDep, user: WriterDep, body: CompositionIn) -> JobOut:
    req = CompositionRequest(
        sources=tuple(body.sources), weights=tuple(body.weights) if body.weights is not None else None,
        task=body.task, base_model=body.base_model, method=body.method, params=body.params, k=body.k,
        min_score=body.min_score, name=body.name, description=body.description, tags=tuple(body.tags),
        visibility=body.visibility,
    )
    job, dedup = hub.compositions.submit(user, req)
    return job_out(job, dedup)


@router.get("/compositions/methods", operation_id="list_composition_methods",
            summary="Merge methods a composition may name, with their params")
def methods() -> list[dict[str, Any]]:
    return describe()


@router.get("/jobs", response_model=list[JobOut], operation_id="list_jobs", summary="Your jobs, newest first")
def list_jobs(hub: HubDep, user: UserDep,
              status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None,
              limit: Annotated[int, Query(ge=1, le=200)] = 50) -> list[JobOut]:
    if user is None:
        raise AuthenticationError("listing jobs needs an API token (Authorization: Bearer <token>)")
    return [job_out(j) for j in hub.jobs.list(user.id, status=status, limit=limit)]


@router.get("/jobs/{job_id}", response_model=JobOut, operation_id="get_job",
            summary="A job's status, progress, log, result or error (by its id or any unique prefix of it)",
            responses={409: {"description": "the prefix matches several jobs (listed in the error)"}})
def get_job(hub: HubDep, user: UserDep, job_id: str) -> JobOut:
    return job_out(hub.jobs.get(job_id, user.id if user else None))


@router.delete("/jobs/{job_id}", response_model=JobOut, operation_id="cancel_job",
               summary="Cancel a queued or running job (by id or unique prefix); a cancelled job publishes nothing")
def cancel_job(hub: HubDep, user: WriterDep, job_id: str) -> JobOut:
    return job_out(hub.jobs.cancel(job_id, user.id))
