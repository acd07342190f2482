"""The Hugging Face sync routes of a hub (``/api/v1/hf/...``), through a :class:`hub.client.LoomClient`.

    from hub.client import LoomClient
    from hub.client_hf import HfClient
    with LoomClient("http://127.0.0.1:8000", token="loom_...") as c:
        hf = HfClient(c)
        hf.import_repo("org/repo@main")
        hf.export("me/adapter@2", "me/adapter-lora", private=True)
"""

from __future__ import annotations

from typing import Any

from hub.client import LoomClient, without_none


class HfClient:
    """The Hub import, search, sync and export routes of one hub. Errors come back as the server's domain errors.

    Args:
        client: the hub's client (its URL, token and connection; the caller closes it).
    """

    def __init__(self, client: LoomClient) -> None:
        self.client = client

    def import_repo(self, repo: str, *, revision: str | None = None, name: str | None = None,
                    visibility: str | None = None) -> dict[str, Any]:
        """Import one Hub repo (``org/repo[@revision]``); returns ``{"items": [...], "imported", ...}``."""
        body = without_none(repo=repo, revision=revision, name=name, visibility=visibility)
        return self.client.request("POST", "/api/v1/hf/import", json=body)

    def import_search(self, *, search: str | None = None, author: str | None = None,
                      base_model: str | None = None, limit: int = 20,
                      visibility: str | None = None) -> dict[str, Any]:
        """Import every hit of a Hub search in one request (server side)."""
        body = without_none(search=search, author=author, base_model=base_model, limit=limit, visibility=visibility)
        return self.client.request("POST", "/api/v1/hf/import", json=body)

    def search(self, *, search: str | None = None, author: str | None = None, base_model: str | None = None,
               limit: int = 20) -> list[dict[str, Any]]:
        """PEFT adapters on the Hub: ``[{"repo_id", "sha", "private", "gated", "tags", "last_modified"}]``."""
        return self.client.request("GET", "/api/v1/hf/search",
                                   params=without_none(search=search, author=author, base_model=base_model,
                                                       limit=limit))

    def sync(self, repos: list[str] | None = None) -> dict[str, Any]:
        """Re-sync your Hub imports: ``{"updated": [...], "unchanged": [...], "errors": {...}}``."""
        return self.client.request("POST", "/api/v1/hf/sync", json={"repos": repos})

    def export(self, ref: str, repo: str, *, private: bool = False,
               commit_message: str | None = None) -> dict[str, Any]:
        """Push ``ns/name[@version]`` to the Hub repo ``repo``; returns the commit sha and URL."""
        body = without_none(name=ref, repo=repo, private=private, commit_message=commit_message)
        return self.client.request("POST", "/api/v1/hf/export", json=body)
