"""The Hugging Face Hub client of a registry: one ``HfApi`` (built on first use) and one retry policy.

Built from settings (``hf_endpoint``, ``hf_token``); without a token it sends none (``token=False``,
never an ambient one). Tokens stay in ``SecretStr`` and are never logged.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi
    from pydantic import SecretStr


class HubClient:
    """The ``HfApi`` and retry policy shared by imports, re-syncs and exports.

    Args:
        endpoint: the Hub's URL. token: a write/read token, or None to send none.
        api: an ``HfApi`` to use instead of one built from the above (tests, custom clients).
        policy: retry policy for rate limits and 5xx.
    """

    def __init__(self, endpoint: str, token: SecretStr | None = None, *, api: HfApi | None = None,
                 policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.endpoint, self.token, self.policy = endpoint.rstrip("/"), token, policy
        self._api = api
        self._lock = threading.Lock()

    @property
    def api(self) -> HfApi:
        """The ``HfApi`` (huggingface_hub is imported on first use)."""
        with self._lock:
            if self._api is None:
                from huggingface_hub import HfApi

                token = self.token.get_secret_value() if self.token is not None else None
                self._api = HfApi(endpoint=self.endpoint, token=token or False)
            return self._api
