"""Hub repo references: ``org/repo[@revision]`` parsing, validation and ``hf:org/repo@sha`` sources."""

from __future__ import annotations

import re

from hub.core.errors import InvalidInputError

#: the Hub's repo id rule: ``namespace/name``, each part alphanumerics, ``-``, ``_``, ``.``; at most 96 chars.
_PART = r"[A-Za-z0-9](?:[A-Za-z0-9._-]{0,94}[A-Za-z0-9_])?"
_REPO_ID_RE = re.compile(rf"^{_PART}/{_PART}$")
_SHA_RE = re.compile(r"^[0-9a-f]{40}$")
SOURCE_PREFIX = "hf:"


def validate_repo_id(repo_id: str) -> str:
    """Return ``repo_id`` if it is a valid ``namespace/name`` model id.

    Raises:
        InvalidInputError: the id is empty, has no namespace, or has characters the Hub refuses.
    """
    if not isinstance(repo_id, str) or not _REPO_ID_RE.match(repo_id) or ".." in repo_id or "--" in repo_id:
        raise InvalidInputError(
            f"repo_id must look like 'namespace/name' (letters, digits, '-', '_', '.'), got {repo_id!r}"
        )
    return repo_id


def parse_repo_ref(ref: str) -> tuple[str, str | None]:
    """Split ``org/repo@revision`` (or ``hf:org/repo@revision``) into ``(repo_id, revision or None)``.

    Raises:
        InvalidInputError: a malformed id or an empty revision after ``@``.
    """
    text = ref.strip()
    if text.startswith(SOURCE_PREFIX):
        text = text[len(SOURCE_PREFIX):]
    repo_id, sep, revision = text.partition("@")
    if sep and not revision:
        raise InvalidInputError(f"revision after '@' is empty in {ref!r}")
    return validate_repo_id(repo_id), (revision or None)


def is_commit_sha(revision: str | None) -> bool:
    """True for a full 40-hex commit id."""
    return bool(revision) and _SHA_RE.match(revision or "") is not None


def source_uri(repo_id: str, sha: str) -> str:
    """The source string Loom records for an imported adapter: ``hf:org/repo@<commit sha>``."""
    if not is_commit_sha(sha):
        raise InvalidInputError(f"sha must be a 40-hex commit id, got {sha!r}")
    return f"{SOURCE_PREFIX}{validate_repo_id(repo_id)}@{sha}"


def parse_source(source: str) -> tuple[str, str]:
    """Inverse of :func:`source_uri`: ``hf:org/repo@sha`` -> ``(repo_id, sha)``.

    Raises:
        InvalidInputError: not an ``hf:`` source pinned to a full commit sha.
    """
    if not source.startswith(SOURCE_PREFIX):
        raise InvalidInputError(f"not a Hugging Face source (expected 'hf:org/repo@sha'), got {source!r}")
    repo_id, revision = parse_repo_ref(source)
    if not is_commit_sha(revision):
        raise InvalidInputError(f"source must be pinned to a 40-hex commit sha, got {source!r}")
    return repo_id, revision  # type: ignore[return-value]
