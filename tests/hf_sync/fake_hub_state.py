"""In-memory state of the fake Hugging Face Hub: repos, commits, branches, tags, LFS objects.

Kept apart from the HTTP layer (``fake_hub.py``) so tests can seed repos directly and the routes
stay small. Commit ids are 40-hex sha1s over the parent, the tree and the message, like git's.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import yaml

_LFS_SUFFIXES = (".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".gguf", ".h5", ".msgpack", ".onnx")
_LFS_MIN_SIZE = 10 * 1024 * 1024
_counter = itertools.count()


def git_blob_oid(data: bytes) -> str:
    """The git blob id of ``data`` (sha1 over ``blob <len>\\0<data>``)."""
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def is_lfs_path(path: str, size: int) -> bool:
    """How the Hub decides between a regular git blob and an LFS object (by suffix or size)."""
    return path.endswith(_LFS_SUFFIXES) or size >= _LFS_MIN_SIZE


@dataclass(frozen=True)
class FileEntry:
    """One file in a commit's tree."""

    data: bytes
    lfs: bool

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def blob_oid(self) -> str:
        return git_blob_oid(self.data)

    @property
    def etag(self) -> str:
        """LFS files are tagged by their sha256, regular files by their git blob id (as on the Hub)."""
        return self.sha256 if self.lfs else self.blob_oid


@dataclass(frozen=True)
class Commit:
    oid: str
    parent: str | None
    files: dict[str, FileEntry]
    message: str
    date: datetime


@dataclass
class Repo:
    """A model repo: commits by id, branch and tag heads, visibility."""

    repo_id: str
    private: bool = False
    gated: bool | str = False
    commits: dict[str, Commit] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    granted: set[str] = field(default_factory=set)

    @property
    def author(self) -> str:
        return self.repo_id.split("/")[0]

    def resolve(self, revision: str) -> Commit | None:
        """A branch, a tag, a full commit id or a unique prefix of at least 7 hex chars."""
        oid = self.branches.get(revision) or self.tags.get(revision)
        if oid is None and revision in self.commits:
            oid = revision
        if oid is None and len(revision) >= 7:
            hits = [c for c in self.commits if c.startswith(revision)]
            oid = hits[0] if len(hits) == 1 else None
        return self.commits.get(oid) if oid else None

    def head(self) -> Commit:
        return self.commits[self.branches["main"]]

    def card_data(self, commit: Commit | None = None) -> dict | None:
        """The YAML front matter of README.md at ``commit`` (main by default), or None."""
        entry = (commit or self.head()).files.get("README.md")
        if entry is None:
            return None
        try:
            return parse_front_matter(entry.data.decode("utf-8", "replace"))
        except (ValueError, yaml.YAMLError):
            return None  # the Hub keeps a card with broken metadata; it just has no cardData

    def tags_for(self, commit: Commit | None = None) -> list[str]:
        """Hub-style tags: the card's tags plus library, license, base_model and dataset tags."""
        card = self.card_data(commit) or {}
        tags = [str(t) for t in card.get("tags") or []]
        lib = card.get("library_name")
        if lib:
            tags.append(str(lib))
        if card.get("license"):
            tags.append(f"license:{card['license']}")
        bases = card.get("base_model") or []
        relation = card.get("base_model_relation") or ("adapter" if lib == "peft" else "finetune")
        for base in [bases] if isinstance(bases, str) else bases:
            tags += [f"base_model:{base}", f"base_model:{relation}:{base}"]
        tags += [f"dataset:{d}" for d in card.get("datasets") or []]
        if any(p.endswith(".safetensors") for p in (commit or self.head()).files):
            tags.append("safetensors")
        return list(dict.fromkeys(tags))

    def last_modified(self) -> datetime:
        return self.head().date


def parse_front_matter(text: str) -> dict | None:
    """The YAML mapping between leading ``---`` lines, or None; raises ValueError on bad YAML."""
    if not text.startswith("---"):
        return None
    parts = text.split("\n---", 1)
    if len(parts) != 2:
        return None
    data = yaml.safe_load(parts[0][3:])
    if data is not None and not isinstance(data, dict):
        raise ValueError("model card front matter is not a mapping")
    return data or {}


class HubState:
    """All repos and users of one fake Hub; every method is thread-safe."""

    def __init__(self, tokens: dict[str, str] | None = None, orgs: dict[str, set[str]] | None = None) -> None:
        self.lock = threading.RLock()
        self.repos: dict[str, Repo] = {}
        self.tokens = dict(tokens or {})  # token -> user name
        self.orgs = {k: set(v) for k, v in (orgs or {}).items()}  # org -> member user names
        self.lfs_store: dict[str, bytes] = {}  # sha256 -> bytes (uploaded, maybe not committed)

    # ----- users -----
    def can_write(self, user: str | None, repo_id: str) -> bool:
        ns = repo_id.split("/")[0]
        return user is not None and (user == ns or user in self.orgs.get(ns, set()))

    def can_read(self, user: str | None, repo: Repo) -> bool:
        return not repo.private or self.can_write(user, repo.repo_id)

    def can_download(self, user: str | None, repo: Repo) -> bool:
        if not self.can_read(user, repo):
            return False
        return not repo.gated or self.can_write(user, repo.repo_id) or user in repo.granted

    # ----- seeding and writes -----
    def create_repo(self, repo_id: str, *, private: bool = False, gated: bool | str = False) -> Repo:
        """Create a repo with an initial commit holding ``.gitattributes`` (as the Hub does)."""
        with self.lock:
            if repo_id in self.repos:
                raise KeyError(repo_id)
            repo = Repo(repo_id=repo_id, private=private, gated=gated)
            self.repos[repo_id] = repo
            attrs = b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n*.bin filter=lfs diff=lfs merge=lfs -text\n"
            self.commit(repo_id, {".gitattributes": attrs}, message="initial commit")
            return repo

    def commit(
        self,
        repo_id: str,
        add: dict[str, bytes | str | Path],
        *,
        delete: tuple[str, ...] = (),
        branch: str = "main",
        message: str = "update",
    ) -> str:
        """Commit files (bytes, text or a local path) on ``branch``; returns the new commit id."""
        with self.lock:
            repo = self.repos[repo_id]
            parent = repo.branches.get(branch)
            files = dict(repo.commits[parent].files) if parent else {}
            for path, content in add.items():
                if isinstance(content, Path):
                    data = content.read_bytes()
                elif isinstance(content, str):
                    data = content.encode()
                else:
                    data = content
                files[path] = FileEntry(data=data, lfs=is_lfs_path(path, len(data)))
            for path in delete:
                files.pop(path, None)
            body = f"{parent}|{sorted((p, f.etag) for p, f in files.items())}|{message}|{next(_counter)}"
            oid = hashlib.sha1(body.encode()).hexdigest()
            repo.commits[oid] = Commit(oid=oid, parent=parent, files=files, message=message,
                                       date=datetime.now(UTC))
            repo.branches[branch] = oid
            return oid

    def upload_folder(self, repo_id: str, folder: str | Path, *, branch: str = "main", message: str = "upload",
                      private: bool = False, gated: bool | str = False) -> str:
        """Create ``repo_id`` if needed and commit every file of ``folder`` (seeding helper)."""
        with self.lock:
            if repo_id not in self.repos:
                self.create_repo(repo_id, private=private, gated=gated)
            folder = Path(folder)
            files = {p.relative_to(folder).as_posix(): p for p in folder.rglob("*") if p.is_file()}
            return self.commit(repo_id, dict(files), branch=branch, message=message)

    def tag(self, repo_id: str, tag: str, revision: str = "main") -> None:
        with self.lock:
            repo = self.repos[repo_id]
            commit = repo.resolve(revision)
            if commit is None:
                raise KeyError(revision)
            repo.tags[tag] = commit.oid

    def create_branch(self, repo_id: str, branch: str, revision: str = "main") -> None:
        with self.lock:
            repo = self.repos[repo_id]
            commit = repo.resolve(revision)
            if commit is None:
                raise KeyError(revision)
            repo.branches[branch] = commit.oid
