"""Base model routes: register, list, get."""

from __future__ import annotations

import json

from fastapi import APIRouter

from hub.api.deps import HubDep, UserDep, WriterDep
from hub.api.schemas import BaseModelIn, BaseModelList, BaseModelOut

router = APIRouter(prefix="/api/v1/base-models", tags=["base models"])


@router.post("", status_code=201, response_model=BaseModelOut, operation_id="register_base_model",
             summary="Register a base model: its config.json and its weights (a folder, a .gguf file or a "
                     "Hugging Face id, downloaded or converted once)")
def register(hub: HubDep, user: WriterDep, body: BaseModelIn) -> BaseModelOut:
    config = json.dumps(body.config).encode() if body.config is not None else None
    row = hub.base_models.register(body.id, config, revision=body.revision, weights=body.weights, owner=user,
                                   allowed_roots=hub.settings.allowed_weights_roots)
    return BaseModelOut.of(row, user)


@router.get("", response_model=BaseModelList, operation_id="list_base_models", summary="Registered base models")
def list_bases(hub: HubDep, user: UserDep) -> BaseModelList:
    return BaseModelList(items=[BaseModelOut.of(b, user) for b in hub.base_models.list()])


@router.get("/{model_id:path}", response_model=BaseModelOut, operation_id="get_base_model",
            summary="A registered base model (latest revision unless ?revision=)")
def get_base(hub: HubDep, user: UserDep, model_id: str, revision: str | None = None) -> BaseModelOut:
    return BaseModelOut.of(hub.base_models.get(model_id, revision), user)
