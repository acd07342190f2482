"""Generated and transferred adapters: train a generator, generate from a description, transfer."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hub.api.deps import HubDep, WriterDep
from hub.api.routes.jobs import JobOut, job_out
from hub.services.generation import (
    GenerateRequest,
    TrainGeneratorRequest,
    TransferRequest,
)

router = APIRouter(prefix="/api/v1", tags=["generation"])


class TrainGeneratorIn(BaseModel):
    method: str = Field(description="sg_lora or icm_lora")
    base_model: str
    name: str = Field(description="ns/name of the generator artifact (kind generator)")
    sources: list[str] = Field(default_factory=list, description="adapters to train on (default: all of the base)")
    params: dict[str, Any] = Field(default_factory=dict)
    description: str | None = None


class GenerateIn(BaseModel):
    generator: str = Field(description="ns/name[@version] of a trained generator")
    task: str = Field(description="what the new adapter should do, in words")
    samples: list[str] = Field(default_factory=list, description="example prompts (icm_lora task vectors)")
    seed: int = 0
    name: str | None = None
    visibility: str = "public"


class TransferIn(BaseModel):
    source: str = Field(description="ns/name[@version] of the adapter to move")
    target_base: str = Field(description="registered base model id (with local weights)")
    name: str | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    visibility: str = "public"


@router.post("/generators", status_code=202, response_model=JobOut, operation_id="train_generator",
             summary="Queue a job that trains an SG-LoRA / ICM-LoRA generator on a base model's adapters")
def train_generator(hub: HubDep, user: WriterDep, body: TrainGeneratorIn) -> JobOut:
    req = TrainGeneratorRequest(method=body.method, base_model=body.base_model, name=body.name,
                                sources=tuple(body.sources), params=body.params, description=body.description)
    job, dedup = hub.generation.submit_train_generator(user, req)
    return job_out(job, dedup)


@router.post("/generations", status_code=202, response_model=JobOut, operation_id="generate_adapter",
             summary="Queue a job that generates an adapter from a task description with a trained generator")
def generate(hub: HubDep, user: WriterDep, body: GenerateIn) -> JobOut:
    req = GenerateRequest(generator=body.generator, task=body.task, samples=tuple(body.samples), seed=body.seed,
                          name=body.name, visibility=body.visibility)
    job, dedup = hub.generation.submit_generate(user, req)
    return job_out(job, dedup)


@router.post("/transfers", status_code=202, response_model=JobOut, operation_id="transfer_adapter",
             summary="Queue a Trans-LoRA job that moves an adapter to another base model")
def transfer(hub: HubDep, user: WriterDep, body: TransferIn) -> JobOut:
    req = TransferRequest(source=body.source, target_base=body.target_base, name=body.name, params=body.params,
                          visibility=body.visibility)
    job, dedup = hub.generation.submit_transfer(user, req)
    return job_out(job, dedup)
