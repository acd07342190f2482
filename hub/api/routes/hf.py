"""Hugging Face Hub sync routes: import (one repo or a search), search, re-sync, export, webhook."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request, Response
from pydantic import BaseModel, Field

from hub.api.deps import HubDep, WriterDep
from hub.api.schemas import AdapterOut, ErrorInfo, VersionOut
from hub.core.errors import InvalidInputError, LoomError

router = APIRouter(prefix="/api/v1/hf", tags=["hugging face"])


class HfImportIn(BaseModel):
    """Either ``repo`` (+ ``revision``, ``name``) for one repo, or ``search``/``author``/``base_model`` for many."""

    repo: str | None = Field(default=None, description="org/repo, optionally @revision")
    revision: str | None = Field(default=None, description="branch, tag or commit sha (default: main branch)")
    name: str | None = Field(default=None, description="Loom ns/name (default: <your user>/<repo>)")
    visibility: str | None = Field(default=None, description="public or private (default: as on the Hub)")
    search: str | None = None
    author: str | None = None
    base_model: str | None = None
    limit: int = Field(default=20, ge=1, le=1000)


class HfImportItem(BaseModel):
    repo_id: str
    status: str = Field(description="imported, skipped (this commit was already imported) or failed")
    sha: str | None = None
    adapter: AdapterOut | None = None
    version: VersionOut | None = None
    error: ErrorInfo | None = None
    warnings: list[str] = []


class HfImportOut(BaseModel):
    items: list[HfImportItem]
    imported: int
    skipped: int
    failed: int


class HfRefOut(BaseModel):
    repo_id: str
    sha: str | None
    private: bool
    gated: bool | str
    tags: list[str]
    last_modified: str | None


class HfSyncIn(BaseModel):
    repos: list[str] | None = Field(default=None, description="only these Hub repos (default: all you track)")


class HfSyncItem(BaseModel):
    name: str
    version: int
    repo_id: str
    sha: str
    created: bool


class HfSyncOut(BaseModel):
    updated: list[HfSyncItem]
    unchanged: list[str]
    errors: dict[str, ErrorInfo]


class HfExportIn(BaseModel):
    name: str = Field(description="ns/name[@version] (default: latest version)")
    repo: str = Field(description="the Hub repo to push to (created when missing)")
    private: bool = Field(default=False, description="create the repo private (if it does not exist yet)")
    commit_message: str | None = None


class HfExportOut(BaseModel):
    name: str
    version: int
    repo_id: str
    commit_sha: str
    url: str


class WebhookOut(BaseModel):
    status: str
    repo_id: str | None = None
    sha: str | None = None
    job_id: str | None = None
    reason: str | None = None


def _item(result: Any = None, *, repo_id: str | None = None, status: str | None = None,
          error: LoomError | None = None) -> HfImportItem:
    if result is None:
        assert repo_id is not None and error is not None
        return HfImportItem(repo_id=repo_id, status="failed",
                            error=ErrorInfo(code=error.code, message=error.message, details={}))
    return HfImportItem(repo_id=result.repo_id, status=status or ("imported" if result.created else "skipped"),
                        sha=result.sha, adapter=AdapterOut.of(result.adapter), version=VersionOut.of(result.version),
                        warnings=list(result.warnings))


def _summary(items: list[HfImportItem]) -> HfImportOut:
    count = {s: sum(1 for i in items if i.status == s) for s in ("imported", "skipped", "failed")}
    return HfImportOut(items=items, **count)


@router.post("/import", status_code=201, response_model=HfImportOut, operation_id="hf_import",
             summary="Import LoRA adapters from the Hugging Face Hub (one repo, or every hit of a search)",
             responses={200: {"model": HfImportOut, "description": "nothing new: every commit was already imported"}})
def hf_import(hub: HubDep, user: WriterDep, body: HfImportIn, response: Response) -> HfImportOut:
    svc = hub.hf
    bulk = body.search is not None or body.author is not None or body.base_model is not None
    if bool(body.repo) == bulk:
        raise InvalidInputError("give either repo (one repository) or search/author/base_model (a Hub search)",
                                field="repo")
    if body.repo:
        if body.revision and "@" in body.repo:
            raise InvalidInputError("give the revision in repo (org/repo@rev) or in revision, not both",
                                    field="revision")
        ref = f"{body.repo}@{body.revision}" if body.revision else body.repo
        items = [_item(svc.import_repo(user, ref, name=body.name, visibility=body.visibility))]
    else:
        if body.name is not None:
            raise InvalidInputError("name applies to a single repo import, not to a search", field="name")
        outcomes = svc.import_search(user, search=body.search, author=body.author, base_model=body.base_model,
                                     limit=body.limit, visibility=body.visibility)
        items = [_item(o.result, status=o.status) if o.result is not None
                 else _item(repo_id=o.repo_id, error=o.error) for o in outcomes]
    out = _summary(items)
    if out.imported == 0:
        response.status_code = 200
    return out


@router.get("/search", response_model=list[HfRefOut], operation_id="hf_search",
            summary="List PEFT adapters on the Hugging Face Hub (with the commit sha each would be imported at)")
def hf_search(hub: HubDep, user: WriterDep, search: str | None = None, author: str | None = None,
              base_model: str | None = None, limit: int = Query(default=20, ge=1, le=1000)) -> list[HfRefOut]:
    refs = hub.hf.search(search=search, author=author, base_model=base_model, limit=limit)
    return [HfRefOut(repo_id=r.repo_id, sha=r.sha, private=r.private, gated=r.gated, tags=list(r.tags),
                     last_modified=r.last_modified) for r in refs]


@router.post("/sync", response_model=HfSyncOut, operation_id="hf_sync",
             summary="Re-sync your adapters imported from the Hub: new upstream commits become new versions")
def hf_sync(hub: HubDep, user: WriterDep, body: HfSyncIn | None = None) -> HfSyncOut:
    report = hub.hf.sync(repos=body.repos if body else None, owner=user, require_tracked=True).to_dict()
    return HfSyncOut(updated=[HfSyncItem(**u) for u in report["updated"]], unchanged=report["unchanged"],
                     errors={k: ErrorInfo(**e, details={}) for k, e in report["errors"].items()})


@router.post("/export", status_code=201, response_model=HfExportOut, operation_id="hf_export",
             summary="Push an adapter version to a Hugging Face Hub repo with a generated model card")
def hf_export(hub: HubDep, user: WriterDep, body: HfExportIn) -> HfExportOut:
    res = hub.hf.export(user, body.name, body.repo, private=body.private, commit_message=body.commit_message)
    return HfExportOut(**res.to_dict())


@router.post("/webhook", status_code=202, response_model=WebhookOut, operation_id="hf_webhook",
             summary="Hub webhook (X-Webhook-Secret): a repo update queues a re-sync of that repo",
             responses={200: {"model": WebhookOut, "description": "ignored (not tracked, or not a content update)"}})
async def hf_webhook(request: Request, response: Response) -> WebhookOut:
    from starlette.concurrency import run_in_threadpool

    body = await request.body()
    svc = request.app.state.hub.hf
    outcome = await run_in_threadpool(svc.handle_webhook, dict(request.headers), body)
    if outcome.status != "queued":
        response.status_code = 200
    return WebhookOut(**outcome.to_dict())
