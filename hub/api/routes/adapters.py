"""Adapter routes: publish (multipart), list, get, versions, file download (streamed), patch, delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, Response, UploadFile
from fastapi.responses import StreamingResponse

from hub.api.deps import HubDep, UserDep, WriterDep
from hub.api.guards import INT64_MAX
from hub.api.schemas import (
    AdapterDetail,
    AdapterList,
    AdapterOut,
    PatchIn,
    PublishOut,
    VersionList,
    VersionOut,
)
from hub.core.errors import InvalidAdapterError, InvalidInputError
from hub.services.publish import PublishFiles
from hub.services.search import AdapterFilters

router = APIRouter(prefix="/api/v1/adapters", tags=["adapters"])
SMALL_FILE_LIMIT = 2 * 1024 * 1024


def _split_tags(tags: list[str] | None) -> list[str] | None:
    if tags is None:
        return None
    return [t.strip() for raw in tags for t in raw.split(",") if t.strip()]


def _read_small(f: UploadFile | None, what: str) -> bytes | None:
    if f is None:
        return None
    data = f.file.read(SMALL_FILE_LIMIT + 1)
    if len(data) > SMALL_FILE_LIMIT:
        from hub.core.errors import PayloadTooLargeError

        raise PayloadTooLargeError(f"{what} is over {SMALL_FILE_LIMIT} bytes")
    return data


@router.post("", status_code=201, response_model=PublishOut, operation_id="publish_adapter",
             summary="Publish an adapter (a new version when the name exists)",
             responses={200: {"model": PublishOut, "description": "identical content: the existing version"}})
def publish(
    hub: HubDep,
    user: WriterDep,
    response: Response,
    name: Annotated[str, Form(description="namespace/name; each part matches ^[a-z0-9][a-z0-9._-]{0,63}$ without '..'")],
    adapter_config: Annotated[UploadFile, File(alias="adapter_config.json")],
    adapter_model: Annotated[UploadFile | None, File(alias="adapter_model.safetensors")] = None,
    readme: Annotated[UploadFile | None, File(alias="README.md")] = None,
    samples: Annotated[UploadFile | None, File(alias="samples.jsonl")] = None,
    pickle_weights: Annotated[UploadFile | None, File(alias="adapter_model.bin", include_in_schema=False)] = None,
    description: Annotated[str | None, Form()] = None,
    tags: Annotated[list[str] | None, Form(description="repeated, or comma-separated")] = None,
    license: Annotated[str | None, Form()] = None,
    visibility: Annotated[str | None, Form(description="public or private")] = None,
) -> PublishOut:
    if pickle_weights is not None:
        raise InvalidAdapterError("adapter_model.bin is a pickle file and is never loaded; upload "
                                  "adapter_model.safetensors (peft: save_pretrained(..., safe_serialization=True))")
    if adapter_model is None:
        raise InvalidAdapterError("adapter_model.safetensors is required (a multipart file field of that name)")
    if adapter_model.filename and adapter_model.filename.endswith((".bin", ".pt", ".pth", ".pkl")):
        raise InvalidAdapterError(f"{adapter_model.filename} looks like a pickle file; only safetensors is accepted")
    config = _read_small(adapter_config, "adapter_config.json")
    assert config is not None
    readme_bytes, samples_bytes = _read_small(readme, "README.md"), _read_small(samples, "samples.jsonl")
    staged = hub.publisher.stage(adapter_model.file)  # publish() consumes or deletes it
    res = hub.publisher.publish(
        user, name, PublishFiles(config=config, weights=staged, readme=readme_bytes, samples=samples_bytes),
        description=description, tags=_split_tags(tags), license=license, visibility=visibility,
    )
    if not res.created:
        response.status_code = 200
    return PublishOut(adapter=AdapterOut.of(res.adapter), version=VersionOut.of(res.version), created=res.created,
                      warnings=res.warnings)


def filters_dep(
    base_model: str | None = None, tag: str | None = None, license: str | None = None, owner: str | None = None,
    min_rank: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    max_rank: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    kind: str | None = None,
) -> AdapterFilters:
    return AdapterFilters(base_model=base_model, tag=tag.lower() if tag else None, license=license, owner=owner,
                          min_rank=min_rank, max_rank=max_rank, kind=kind)


@router.get("", response_model=AdapterList, operation_id="list_adapters", summary="List visible adapters")
def list_adapters(
    hub: HubDep, user: UserDep,
    base_model: str | None = None, tag: str | None = None, license: str | None = None, owner: str | None = None,
    min_rank: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    max_rank: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None,
    kind: str | None = None, namespace: str | None = None,
    offset: Annotated[int, Query(ge=0, le=INT64_MAX)] = 0, limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> AdapterList:
    f = filters_dep(base_model, tag, license, owner, min_rank, max_rank, kind)
    if namespace:
        f = AdapterFilters(**{**f.__dict__, "namespace": namespace})
    items, total = hub.adapters.list(user, f, offset=offset, limit=limit)
    return AdapterList(items=[AdapterOut.of(a) for a in items], total=total, offset=offset, limit=limit)


@router.get("/{namespace}/{name}", response_model=AdapterDetail, operation_id="get_adapter",
            summary="An adapter, its latest version and lineage")
def get_adapter(hub: HubDep, user: UserDep, namespace: str, name: str) -> AdapterDetail:
    a = hub.adapters.get(user, namespace, name)
    latest = hub.adapters.version(user, namespace, name) if a.latest_version else None
    lin = hub.adapters.lineage(user, namespace, name) if latest else None
    return AdapterDetail(adapter=AdapterOut.of(a), latest=VersionOut.of(latest) if latest else None,
                         parents=lin.parents if lin else [], children=lin.children if lin else [])


@router.get("/{namespace}/{name}/versions", response_model=VersionList, operation_id="list_versions",
            summary="All versions of an adapter")
def list_versions(hub: HubDep, user: UserDep, namespace: str, name: str) -> VersionList:
    return VersionList(items=[VersionOut.of(v) for v in hub.adapters.versions(user, namespace, name)])


@router.get("/{namespace}/{name}/files/{filename}", operation_id="download_file",
            summary="Download a file of a version (streamed)",
            responses={200: {"content": {"application/octet-stream": {}}}})
def download(hub: HubDep, user: UserDep, namespace: str, name: str, filename: str,
             version: Annotated[int | None, Query(ge=1, le=INT64_MAX)] = None) -> StreamingResponse:
    fs = hub.adapters.open_file(user, namespace, name, filename, version)
    media = {"json": "application/json", "md": "text/markdown; charset=utf-8", "jsonl": "application/jsonl"}
    return StreamingResponse(
        fs.chunks,
        media_type=media.get(filename.rsplit(".", 1)[-1], "application/octet-stream"),
        headers={"Content-Length": str(fs.size), "ETag": f'"{fs.sha256}"', "X-Loom-Version": str(fs.version),
                 "X-Loom-Sha256": fs.sha256, "Content-Disposition": f'attachment; filename="{fs.filename}"'},
    )


@router.patch("/{namespace}/{name}", response_model=AdapterOut, operation_id="patch_adapter",
              summary="Change description, tags, visibility or license (owner only)")
def patch_adapter(hub: HubDep, user: WriterDep, namespace: str, name: str, body: PatchIn) -> AdapterOut:
    if body.model_dump(exclude_none=True) == {}:
        raise InvalidInputError("nothing to change: give description, tags, visibility or license")
    return AdapterOut.of(hub.adapters.patch(user, namespace, name, description=body.description, tags=body.tags,
                                            visibility=body.visibility, license=body.license))


@router.delete("/{namespace}/{name}", status_code=204, operation_id="delete_adapter",
               summary="Delete an adapter and all its versions (owner only)")
def delete_adapter(hub: HubDep, user: WriterDep, namespace: str, name: str) -> Response:
    hub.adapters.delete(user, namespace, name)
    return Response(status_code=204)
