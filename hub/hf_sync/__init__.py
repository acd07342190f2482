"""Hugging Face Hub sync: import, search, re-sync and export LoRA adapters with pinned revisions.

Every function takes an injected, caller-configured ``huggingface_hub.HfApi`` (endpoint and token
are the caller's business; nothing here reads a token or stores one) and works without a DB.
Revisions are always pinned to commit shas; errors are mapped to ``hub.core.errors``.

Names are loaded lazily (PEP 562): ``hub.hf_sync.cards`` and ``hub.hf_sync.webhooks`` need only
PyYAML, so the API can render cards and verify webhooks without importing huggingface_hub or torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BulkItem": "hub.hf_sync.bulk",
    "fetch_many": "hub.hf_sync.bulk",
    "FetchedAdapter": "hub.hf_sync.fetch",
    "fetch_adapter": "hub.hf_sync.fetch",
    "HubAdapterRef": "hub.hf_sync.search",
    "SyncPlan": "hub.hf_sync.search",
    "SyncUpdate": "hub.hf_sync.search",
    "plan_sync": "hub.hf_sync.search",
    "search_adapters": "hub.hf_sync.search",
    "upstream_sha": "hub.hf_sync.search",
    "push_adapter": "hub.hf_sync.push",
    "RetryPolicy": "hub.hf_sync.retry",
    "parse_repo_ref": "hub.hf_sync.refs",
    "parse_source": "hub.hf_sync.refs",
    "source_uri": "hub.hf_sync.refs",
    "validate_repo_id": "hub.hf_sync.refs",
    "card_for_provenance": "hub.hf_sync.cards",
    "mergekit_yaml": "hub.hf_sync.cards",
    "parse_model_card": "hub.hf_sync.cards",
    "render_model_card": "hub.hf_sync.cards",
    "RepoUpdate": "hub.hf_sync.webhooks",
    "parse_webhook_payload": "hub.hf_sync.webhooks",
    "verify_webhook": "hub.hf_sync.webhooks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'hub.hf_sync' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
