"""Export an adapter to the Hub: create the repo if needed, commit PEFT files + model card at once."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from hub.core.errors import InvalidInputError
from hub.core.files import CONFIG_NAME, WEIGHTS_NAME
from hub.core.files import README_NAME as CARD_NAME
from hub.hf_sync.cards import parse_model_card
from hub.hf_sync.errors import CallContext
from hub.hf_sync.fetch import has_token
from hub.hf_sync.refs import validate_repo_id
from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy, call_hub

if TYPE_CHECKING:
    from huggingface_hub import HfApi

log = logging.getLogger(__name__)


def push_adapter(
    api: HfApi,
    folder: str | os.PathLike[str],
    repo_id: str,
    card_text: str,
    private: bool = False,
    *,
    commit_message: str | None = None,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> str:
    """Upload a PEFT folder and its model card to ``repo_id`` in one commit; return the commit sha.

    The folder is validated first (nothing is sent for an invalid adapter); only
    ``adapter_config.json``, ``adapter_model.safetensors`` and the given card (as ``README.md``) are
    uploaded. The repo is created if missing (``private`` applies only then).

    Raises:
        InvalidAdapterError: the folder is not a valid LoRA adapter.
        InvalidInputError: a bad repo id, or a card whose front matter is not valid YAML.
        AuthenticationError / PermissionDeniedError: no token, or no write access to the namespace.
        UpstreamError: the Hub failed (rate limited past the retries, 5xx, network).
    """
    from huggingface_hub import CommitOperationAdd

    from hub.core.peft_io import load_peft

    validate_repo_id(repo_id)
    d = Path(folder)
    load_peft(d)  # raises InvalidAdapterError with the reason
    parse_model_card(card_text)  # raises InvalidInputError on bad YAML
    authed = has_token(api)
    if not authed:
        from hub.core.errors import HF_CREDENTIAL, AuthenticationError

        raise AuthenticationError(f"pushing to {repo_id} needs a Hugging Face token with write access",
                                  credential=HF_CREDENTIAL)
    call_hub(_ensure_repo, api, repo_id, private, ctx=CallContext("creating", repo_id, None, authed),
             policy=policy)
    ops = [
        CommitOperationAdd(path_in_repo=CONFIG_NAME, path_or_fileobj=str(d / CONFIG_NAME)),
        CommitOperationAdd(path_in_repo=WEIGHTS_NAME, path_or_fileobj=str(d / WEIGHTS_NAME)),
        CommitOperationAdd(path_in_repo=CARD_NAME, path_or_fileobj=card_text.encode("utf-8")),
    ]
    message = commit_message or "Upload LoRA adapter from Loom"
    if len(message) > 1000:
        raise InvalidInputError(f"commit_message must be at most 1000 characters, got {len(message)}")
    info = call_hub(api.create_commit, repo_id, ops, commit_message=message, repo_type="model",
                    ctx=CallContext("pushing to", repo_id, "main", authed), policy=policy)
    log.info("pushed adapter to %s at %s", repo_id, info.oid)
    return str(info.oid)


def _ensure_repo(api: HfApi, repo_id: str, private: bool) -> bool:
    """Create ``repo_id`` unless it exists; True when created.

    Does what ``create_repo(exist_ok=True)`` does, without its fallback that builds a ``RepoUrl``
    for the default endpoint only (it fails on a custom endpoint when the namespace is not ours).
    """
    from huggingface_hub.errors import HfHubHTTPError

    try:
        api.create_repo(repo_id, private=private, repo_type="model")
        return True
    except HfHubHTTPError as e:
        status = e.response.status_code if e.response is not None else None
        if status == 409:
            return False
        if status in (401, 402, 403) and api.repo_exists(repo_id):
            return False  # not ours to create, but it exists: the commit decides if we may write
        raise
