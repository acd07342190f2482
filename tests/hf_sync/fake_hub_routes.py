"""Routes of the fake Hub, one function each: ``(state, request, **path params) -> JSON | Reply``.

Each follows what huggingface_hub 2.x sends and parses (see hf_api.py, _commit_api.py, lfs.py,
file_download.py); see ``fake_hub.py`` for the server and the fault injection.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import yaml

from tests.hf_sync.fake_hub_state import Commit, FileEntry, HubState, Repo, is_lfs_path, parse_front_matter

if TYPE_CHECKING:
    from tests.hf_sync.fake_hub import Request

_REPO = r"(?P<repo_id>[^/]+/[^/]+?)"


class HubError(Exception):
    """An error response: status, message (JSON ``error``) and Hub headers (``X-Error-Code`` ...)."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.headers = status, message, headers or {}
        self.extra = extra or {}


@dataclass
class FileReply:
    data: bytes
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class JsonReply:
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def _iso(d: Any) -> str:
    return d.strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _not_found(req: Request) -> HubError:
    # The real Hub answers 401 to anonymous callers for missing and private repos alike.
    return HubError(404 if req.user else 401, "Repository not found",
                    {"X-Error-Code": "RepoNotFound", "X-Error-Message": "Repository not found"})


def _readable(state: HubState, req: Request, repo_id: str) -> Repo:
    repo = state.repos.get(repo_id)
    if repo is None or not state.can_read(req.user, repo):
        raise _not_found(req)
    return repo


def _writable(state: HubState, req: Request, repo_id: str) -> Repo:
    repo = _readable(state, req, repo_id)
    if not state.can_write(req.user, repo_id):
        raise HubError(403, f"You don't have the rights to write to {repo_id}",
                       {"X-Error-Message": "Forbidden: write access denied"})
    return repo


def _resolve(repo: Repo, revision: str) -> Commit:
    commit = repo.resolve(revision)
    if commit is None:
        raise HubError(404, f"Invalid rev id: {revision}",
                       {"X-Error-Code": "RevisionNotFound", "X-Error-Message": "Invalid rev id"})
    return commit


def _model_json(state: HubState, repo: Repo, commit: Commit, *, blobs: bool = False) -> dict[str, Any]:
    card = repo.card_data(commit) or {}
    siblings = []
    for path, f in sorted(commit.files.items()):
        s: dict[str, Any] = {"rfilename": path}
        if blobs:
            s.update(blobId=f.blob_oid, size=f.size)
            if f.lfs:
                s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
        siblings.append(s)
    return {
        "_id": hashlib.md5(repo.repo_id.encode()).hexdigest()[:24],
        "id": repo.repo_id, "modelId": repo.repo_id, "author": repo.author, "sha": commit.oid,
        "lastModified": _iso(commit.date), "createdAt": _iso(repo.created_at),
        "private": repo.private, "gated": repo.gated, "disabled": False, "downloads": 0, "likes": 0,
        "tags": repo.tags_for(commit), "library_name": card.get("library_name"),
        "pipeline_tag": card.get("pipeline_tag"), "cardData": card or None, "siblings": siblings,
    }


# ----- repos -----
def create_repo(state: HubState, req: Request) -> Any:
    if req.user is None:
        raise HubError(401, "You must be authenticated to create a repo")
    payload = json.loads(req.body or b"{}")
    repo_id = f"{payload.get('organization') or req.user}/{payload['name']}"
    if not state.can_write(req.user, repo_id):
        raise HubError(403, f"You don't have the rights to create a repo under {repo_id.split('/')[0]}")
    url = f"{req.base_url}/{repo_id}"
    private = payload.get("visibility") == "private" or bool(payload.get("private"))
    try:
        state.create_repo(repo_id, private=private)
    except KeyError:
        # create_repo(exist_ok=True) reads the url from the 409 body, as the real Hub sends it.
        raise HubError(409, "You already created this model repo", extra={"url": url}) from None
    return {"url": url, "name": repo_id, "id": repo_id}


def validate_yaml(state: HubState, req: Request) -> Any:
    content = json.loads(req.body or b"{}").get("content", "")
    try:
        parse_front_matter(content)
    except (ValueError, yaml.YAMLError) as e:
        raise HubError(400, f"Invalid YAML: {e}") from None
    return {"errors": [], "warnings": []}


def whoami(state: HubState, req: Request) -> Any:
    if req.user is None:
        raise HubError(401, "Invalid username or password.")
    orgs = [{"name": o} for o, members in state.orgs.items() if req.user in members]
    return {"type": "user", "name": req.user, "orgs": orgs}


def model_info(state: HubState, req: Request, repo_id: str, revision: str = "main") -> Any:
    repo = _readable(state, req, repo_id)
    return _model_json(state, repo, _resolve(repo, revision), blobs=req.q("blobs") in ("True", "true", "1"))


_DEFAULT_LIST_FIELDS = ("_id", "id", "likes", "downloads", "private", "tags", "pipeline_tag", "library_name",
                        "createdAt", "modelId")


def list_models(state: HubState, req: Request) -> Any:
    filters = req.query.get("filter", [])
    author, search = req.q("author"), (req.q("search") or "").lower()
    with state.lock:
        repos = [r for r in state.repos.values() if state.can_read(req.user, r)]
        items = []
        for r in repos:
            if author and r.author != author:
                continue
            if search and search not in r.repo_id.lower():
                continue
            tags = set(r.tags_for())
            if any(f not in tags for f in filters):
                continue
            full = _model_json(state, r, r.head())
            expand = req.query.get("expand")
            keys = ("_id", "id", *expand) if expand else _DEFAULT_LIST_FIELDS
            if req.q("full") in ("True", "true", "1"):
                keys = tuple(full)
            items.append({k: full[k] for k in keys if k in full})
    offset = int(req.q("cursor") or 0)
    page_size = int(req.q("limit") or 20)
    page = items[offset: offset + page_size]
    headers = {}
    if offset + page_size < len(items):
        query = {k: v for k, v in req.query.items() if k != "cursor"}
        query["cursor"] = [str(offset + page_size)]
        headers["Link"] = f'<{req.base_url}/api/models?{urlencode(query, doseq=True)}>; rel="next"'
    return JsonReply(page, headers)


def tree(state: HubState, req: Request, repo_id: str, revision: str, path: str = "") -> Any:
    repo = _readable(state, req, repo_id)
    commit = _resolve(repo, revision)
    prefix = path.strip("/") + "/" if path else ""
    out = []
    for p, f in sorted(commit.files.items()):
        if not p.startswith(prefix):
            continue
        item: dict[str, Any] = {"type": "file", "oid": f.blob_oid, "size": f.size, "path": p}
        if f.lfs:
            item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
        out.append(item)
    return out


# ----- downloads -----
def resolve_file(state: HubState, req: Request, repo_id: str, revision: str, path: str) -> Any:
    repo = _readable(state, req, repo_id)
    if not state.can_download(req.user, repo):
        raise HubError(403 if req.user else 401, f"Access to model {repo_id} is restricted",
                       {"X-Error-Code": "GatedRepo", "X-Error-Message": "Access to this model is restricted"})
    commit = _resolve(repo, revision)
    f: FileEntry | None = commit.files.get(path)
    if f is None:
        raise HubError(404, "Entry not found", {"X-Error-Code": "EntryNotFound",
                                                "X-Error-Message": "Entry not found", "X-Repo-Commit": commit.oid})
    return FileReply(f.data, {"X-Repo-Commit": commit.oid, "ETag": f'"{f.etag}"'})


# ----- uploads -----
def preupload(state: HubState, req: Request, repo_id: str, revision: str) -> Any:
    repo = _writable(state, req, repo_id)
    commit = _resolve(repo, revision)
    files = []
    for item in json.loads(req.body)["files"]:
        existing = commit.files.get(item["path"])
        files.append({"path": item["path"], "uploadMode": "lfs" if is_lfs_path(item["path"], item["size"])
                      else "regular", "shouldIgnore": False, "oid": existing.etag if existing else None})
    return {"files": files, "commitOid": commit.oid}


def lfs_batch(state: HubState, req: Request, repo_id: str) -> Any:
    _writable(state, req, repo_id)
    payload = json.loads(req.body)
    objects = []
    for obj in payload["objects"]:
        entry: dict[str, Any] = {"oid": obj["oid"], "size": obj["size"], "authenticated": True}
        if obj["oid"] not in state.lfs_store:
            entry["actions"] = {
                "upload": {"href": f"{req.base_url}/_lfs/{obj['oid']}", "header": {}},
                "verify": {"href": f"{req.base_url}/_lfs/{obj['oid']}/verify", "header": {}},
            }
        objects.append(entry)
    return {"transfer": "basic", "objects": objects}


def lfs_put(state: HubState, req: Request, oid: str) -> Any:
    if hashlib.sha256(req.body).hexdigest() != oid:
        raise HubError(400, "sha256 of the uploaded body does not match the object id")
    with state.lock:
        state.lfs_store[oid] = req.body
    return {}


def lfs_verify(state: HubState, req: Request, oid: str) -> Any:
    payload = json.loads(req.body)
    data = state.lfs_store.get(oid)
    if data is None or len(data) != payload.get("size"):
        raise HubError(404, f"LFS object {oid} was not uploaded")
    return {}


def commit(state: HubState, req: Request, repo_id: str, revision: str) -> Any:
    repo = _writable(state, req, repo_id)
    _resolve(repo, revision)
    if revision not in repo.branches:
        raise HubError(400, f"Cannot commit to {revision!r}: not a branch")
    lines = [json.loads(line) for line in req.body.decode().splitlines() if line.strip()]
    header = next((ln["value"] for ln in lines if ln["key"] == "header"), {})
    add: dict[str, bytes] = {}
    delete: list[str] = []
    with state.lock:
        parent = header.get("parentCommit")
        if parent and repo.branches[revision] != parent:
            raise HubError(412, "A commit has happened since. Please refresh and try again.")
        for ln in lines:
            key, value = ln["key"], ln["value"]
            if key == "file":
                add[value["path"]] = base64.b64decode(value["content"])
            elif key == "lfsFile":
                data = state.lfs_store.get(value["oid"])
                if data is None:
                    raise HubError(422, f"LFS object {value['oid']} for {value['path']} was never uploaded")
                add[value["path"]] = data
            elif key in ("deletedFile", "deletedFolder"):
                delete.append(value["path"])
        oid = state.commit(repo_id, add, delete=tuple(delete), branch=revision,
                           message=header.get("summary") or "update")
    return {"commitUrl": f"{req.base_url}/{repo_id}/commit/{oid}", "commitOid": oid, "success": True}


ROUTES: list[tuple[str, re.Pattern[str], Any]] = [
    ("POST", re.compile(r"/api/repos/create"), create_repo),
    ("POST", re.compile(r"/api/validate-yaml"), validate_yaml),
    ("GET", re.compile(r"/api/whoami-v2"), whoami),
    ("GET", re.compile(r"/api/models"), list_models),
    ("GET", re.compile(rf"/api/models/{_REPO}/revision/(?P<revision>[^/]+)"), model_info),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/(?P<revision>[^/]+)(?:/(?P<path>.*))?"), tree),
    ("GET", re.compile(rf"/api/models/{_REPO}"), model_info),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/(?P<revision>[^/]+)"), preupload),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/(?P<revision>[^/]+)"), commit),
    ("POST", re.compile(rf"/{_REPO}\.git/info/lfs/objects/batch"), lfs_batch),
    ("PUT", re.compile(r"/_lfs/(?P<oid>[0-9a-f]{64})"), lfs_put),
    ("POST", re.compile(r"/_lfs/(?P<oid>[0-9a-f]{64})/verify"), lfs_verify),
    ("GET", re.compile(rf"/{_REPO}/resolve/(?P<revision>[^/]+)/(?P<path>.+)"), resolve_file),
]
