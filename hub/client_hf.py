"""Client methods of the Hugging Face sync routes (``/api/v1/hf/...``), on top of :class:`hub.client.LoomClient`.

    from hub.client_hf import HfClient
    with HfClient("http://127.0.0.1:8000", token="loom_...") as c:
        c.hf_import("org/repo@main")
        c.hf_export("me/adapter@2", "me/adapter-lora", private=True)
"""

from __future__ import annotations

from typing import Any

from hub.client import LoomClient


class HfClient(LoomClient):
    """:class:`LoomClient` plus the Hub sync routes. Errors come back as the server's domain errors."""

    def hf_import(self, repo: str, *, revision: str | None = None, name: str | None = None,
                  visibility: str | None = None) -> dict[str, Any]:
        """Import one Hub repo (``org/repo[@revision]``); returns ``{"items": [...], "imported", ...}``."""
        body = self._params(repo=repo, revision=revision, name=name, visibility=visibility)
        return self._req("POST", "/api/v1/hf/import", json=body)

    def hf_import_search(self, *, search: str | None = None, author: str | None = None,
                         base_model: str | None = None, limit: int = 20,
                         visibility: str | None = None) -> dict[str, Any]:
        """Import every hit of a Hub search in one request (server side)."""
        body = self._params(search=search, author=author, base_model=base_model, limit=limit, visibility=visibility)
        return self._req("POST", "/api/v1/hf/import", json=body)

    def hf_search(self, *, search: str | None = None, author: str | None = None, base_model: str | None = None,
                  limit: int = 20) -> list[dict[str, Any]]:
        """PEFT adapters on the Hub: ``[{"repo_id", "sha", "private", "gated", "tags", "last_modified"}]``."""
        return self._req("GET", "/api/v1/hf/search",
                         params=self._params(search=search, author=author, base_model=base_model, limit=limit))

    def hf_sync(self, repos: list[str] | None = None) -> dict[str, Any]:
        """Re-sync your Hub imports: ``{"updated": [...], "unchanged": [...], "errors": {...}}``."""
        return self._req("POST", "/api/v1/hf/sync", json={"repos": repos})

    def hf_export(self, ref: str, repo: str, *, private: bool = False,
                  commit_message: str | None = None) -> dict[str, Any]:
        """Push ``ns/name[@version]`` to the Hub repo ``repo``; returns the commit sha and URL."""
        body = self._params(name=ref, repo=repo, private=private, commit_message=commit_message)
        return self._req("POST", "/api/v1/hf/export", json=body)
