"""Bulk import: fetch many Hub adapters one by one, pinned to the sha the listing saw, never twice.

A generator, so the caller (the CLI's progress bar, a background job) sees each result as it
lands and one bad repo does not stop the rest.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from hub.core.errors import LoomError
from hub.hf_sync.fetch import FetchedAdapter, fetch_adapter
from hub.hf_sync.refs import parse_repo_ref
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy
from hub.hf_sync.search import HubAdapterRef

if TYPE_CHECKING:
    from huggingface_hub import HfApi


@dataclass(frozen=True)
class BulkItem:
    """The outcome for one repo: ``imported`` (with ``fetched``), ``skipped`` (sha already known) or ``failed``."""

    repo_id: str
    status: Literal["imported", "skipped", "failed"]
    sha: str | None = None
    fetched: FetchedAdapter | None = None
    error: LoomError | None = None


def _folder_name(repo_id: str, revision: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", f"{repo_id.replace('/', '--')}--{revision or 'default'}")


def fetch_many(
    api: HfApi,
    refs: Iterable[HubAdapterRef | str],
    dest_root: str | os.PathLike[str],
    *,
    known: Mapping[str, Iterable[str]] | None = None,
    max_bytes: int | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> Iterator[BulkItem]:
    """Fetch each ref into ``dest_root/<org>--<name>--<sha>``, yielding one :class:`BulkItem` per ref.

    Args:
        refs: search hits (fetched at the sha the listing returned) or ``org/repo[@rev]`` strings.
        known: repo id -> shas already imported; those are skipped without a download.
        max_bytes: per-adapter weight size limit.

    Yields:
        A :class:`BulkItem` per ref, in order; errors are caught per repo (``status="failed"``).
    """
    root = Path(dest_root)
    seen: dict[str, set[str]] = {k: set(v) for k, v in (known or {}).items()}
    for ref in refs:
        try:
            if isinstance(ref, HubAdapterRef):
                repo_id, revision = ref.repo_id, ref.sha
            else:
                repo_id, revision = parse_repo_ref(ref)
            if revision is not None and revision in seen.get(repo_id, set()):
                yield BulkItem(repo_id, "skipped", sha=revision)
                continue
            got = fetch_adapter(api, repo_id, revision, dest_dir=root / _folder_name(repo_id, revision),
                                max_bytes=max_bytes, policy=policy)
        except LoomError as e:
            yield BulkItem(ref.repo_id if isinstance(ref, HubAdapterRef) else str(ref), "failed", error=e)
            continue
        if got.sha in seen.get(repo_id, set()):  # a branch or tag that resolved to a known sha
            import shutil

            shutil.rmtree(got.path, ignore_errors=True)
            yield BulkItem(repo_id, "skipped", sha=got.sha)
            continue
        seen.setdefault(repo_id, set()).add(got.sha)
        yield BulkItem(repo_id, "imported", sha=got.sha, fetched=got)
