"""Pydantic models of the HTTP API (responses and JSON bodies)."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from hub.db import models as m


class ErrorInfo(BaseModel):
    code: str
    message: str
    details: Any = None


class ErrorOut(BaseModel):
    error: ErrorInfo


class AdapterOut(BaseModel):
    id: str = Field(description="namespace/name")
    namespace: str
    name: str
    owner: str
    visibility: str
    kind: str
    description: str
    tags: list[str]
    license: str | None
    base_model: str | None
    latest_version: int
    rank: int | None
    downloads: int
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, a: m.Adapter) -> AdapterOut:
        return cls(id=a.full_name, namespace=a.namespace, name=a.name, owner=a.owner.name, visibility=a.visibility,
                   kind=a.kind, description=a.description, tags=list(a.tags or []), license=a.license,
                   base_model=a.base_model, latest_version=a.latest_version, rank=a.latest_rank,
                   downloads=a.downloads, created_at=a.created_at, updated_at=a.updated_at)


class FileOut(BaseModel):
    size: int
    sha256: str


class VersionOut(BaseModel):
    number: int
    sha256: str
    size: int
    rank: int
    ranks: dict[str, int]
    target_modules: list[str]
    base_model: str
    base_revision: str | None
    config: dict[str, Any]
    files: dict[str, FileOut]
    source: str
    provenance: dict[str, Any] | None
    created_at: datetime

    @classmethod
    def of(cls, v: m.AdapterVersion) -> VersionOut:
        return cls(number=v.number, sha256=v.sha256, size=v.size, rank=v.rank, ranks=v.ranks or {},
                   target_modules=list(v.target_modules or []), base_model=v.base_model, base_revision=v.base_revision,
                   config=v.config, files={k: FileOut(size=f["size"], sha256=f["key"]) for k, f in v.files.items()},
                   source=v.source, provenance=v.provenance, created_at=v.created_at)


class PublishOut(BaseModel):
    adapter: AdapterOut
    version: VersionOut
    created: bool = Field(description="false when identical content was already published as this version")
    warnings: list[str] = []


class AdapterDetail(BaseModel):
    adapter: AdapterOut
    latest: VersionOut | None
    parents: list[dict[str, Any]] = []
    children: list[dict[str, Any]] = []


class AdapterList(BaseModel):
    items: list[AdapterOut]
    total: int
    offset: int
    limit: int


class VersionList(BaseModel):
    items: list[VersionOut]


class PatchIn(BaseModel):
    description: str | None = None
    tags: list[str] | None = None
    visibility: str | None = None
    license: str | None = None


class SearchHitOut(BaseModel):
    adapter: AdapterOut
    score: float = Field(description="cosine similarity of the query and the adapter's text")
    exact: bool = Field(description="the query equals the adapter's name or one of its tags")
    match: Literal["good", "weak"] = Field(
        description="'weak': the score is below the hub's match threshold (LOOM_SEARCH_MATCH_THRESHOLD), so the "
                    "adapter probably does not do what the query asks")
    rerank_score: float | None = Field(
        None, description="the reranker's mean log-probability of the query as a request for this adapter (higher "
                          "fits better); null when the hit was not reranked")


class SearchOut(BaseModel):
    query: str
    k: int
    match: Literal["good", "weak"] = Field(
        description="'weak' when no result is a good match (none, or every score below the threshold)")
    threshold: float = Field(description="the match threshold the results were judged against")
    reranked: bool = Field(False, description="whether the best hits were reordered by the reranker "
                                              "(LOOM_SEARCH_RERANK)")
    results: list[SearchHitOut]


class BaseModelIn(BaseModel):
    id: str = Field(description="e.g. meta-llama/Llama-3.1-8B")
    revision: str | None = Field(None, description="default: the pinned commit sha of Hugging Face weights, "
                                                   "else 'main'")
    config: dict[str, Any] | None = Field(None, description="the model's config.json (default: the weights' own)")
    weights: str | None = Field(None, description="a local folder, a .gguf file on the server, or a Hugging Face "
                                                  "repo id org/name[@revision] (downloaded once, pinned to a sha)")


class BaseModelOut(BaseModel):
    id: str
    revision: str
    weights: str | None = Field(None, description="where the weights are on the server (shown to the base's owner "
                                                   "only)")
    source: dict[str, Any] | None = Field(
        None, description="where the weights came from: {kind: folder}, {kind: hf, repo_id, revision, sha} or "
                          "{kind: gguf, file, sha256, architecture}")
    config: dict[str, Any]
    created_at: datetime

    @classmethod
    def of(cls, b: m.BaseModel, viewer: m.User | None = None) -> BaseModelOut:
        """The API view of ``b``; where its weights are on the server only for its owner."""
        mine = viewer is not None and b.owner_id is not None and b.owner_id == viewer.id
        source = b.source
        if source and not mine and "file" in source:
            source = {**source, "file": str(source["file"]).replace("\\", "/").rsplit("/", 1)[-1]}
        return cls(id=b.model_id, revision=b.revision, weights=b.weights if mine else None, source=source,
                   config=b.config, created_at=b.created_at)


class BaseModelList(BaseModel):
    items: list[BaseModelOut]


class WhoAmI(BaseModel):
    user: str | None


class Health(BaseModel):
    status: str = Field(description="ok, or degraded while a job worker is down")
    database: str
    adapters_indexed: int | None
    workers: dict[str, Any] | None = Field(default=None, description=(
        "job workers: up, down (registered but not heart-beating), and with `loom serve`'s supervision "
        "expected, restarts and per-lane counts"))
