"""Base model routes: register, list, get."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter
from fastapi.responses import FileResponse

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


@router.get("/{model_id:path}/files", operation_id="list_base_model_files",
            summary="The files of a base whose weights this hub holds (a from_pretrained folder): name, size, url",
            responses={404: {"description": "no such base, or the hub does not hold its weights"}})
def list_base_files(hub: HubDep, user: UserDep, model_id: str, revision: str | None = None) -> dict[str, Any]:
    items = hub.base_files.list(model_id, revision)
    rev = f"?revision={revision}" if revision else ""
    return {"id": model_id, "items": [{**f, "url": f"/api/v1/base-models/{model_id}/files/{f['name']}{rev}"}
                                      for f in items]}


@router.get("/{model_id:path}/files/{filename}", operation_id="download_base_model_file",
            summary="Download one file of a base whose weights this hub holds",
            responses={200: {"content": {"application/octet-stream": {}}},
                       404: {"description": "no such base or file"}})
def download_base_file(hub: HubDep, user: UserDep, model_id: str, filename: str,
                       revision: str | None = None) -> FileResponse:
    path = hub.base_files.path(model_id, filename, revision)
    return FileResponse(path, filename=filename, media_type="application/octet-stream")


@router.get("/{model_id:path}", response_model=BaseModelOut, operation_id="get_base_model",
            summary="A registered base model (latest revision unless ?revision=)")
def get_base(hub: HubDep, user: UserDep, model_id: str, revision: str | None = None) -> BaseModelOut:
    return BaseModelOut.of(hub.base_models.get(model_id, revision), user)
