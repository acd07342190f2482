"""The Hugging Face Hub client of a registry: one ``HfApi`` (built on first use) and one retry policy.

Built from settings (:meth:`hub.settings.Settings.hf_api`: ``hf_endpoint`` and ``hf_token``, which follow
``HF_ENDPOINT``, ``HF_TOKEN`` and the token ``hf auth login`` saved when the ``LOOM_HF_*`` settings are
unset); without a token it sends none (``token=False``, never an ambient one). Tokens stay in ``SecretStr``
and are never logged.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from hub.hf_sync.retry import DEFAULT_POLICY, RetryPolicy

if TYPE_CHECKING:  # pragma: no cover
    from huggingface_hub import HfApi


class HubClient:
    """The ``HfApi`` and retry policy shared by imports, re-syncs and exports.

    Args:
        endpoint: the Hub's URL (for links). make_api: builds the ``HfApi`` on first use.
        api: an ``HfApi`` to use instead (tests, custom clients). policy: retry policy for rate limits and 5xx.
    """

    def __init__(self, endpoint: str, make_api: Callable[[], HfApi], *, api: HfApi | None = None,
                 policy: RetryPolicy = DEFAULT_POLICY) -> None:
        self.endpoint, self.policy = endpoint.rstrip("/"), policy
        self._make_api, self._api = make_api, api
        self._lock = threading.Lock()

    @property
    def api(self) -> HfApi:
        """The ``HfApi`` (huggingface_hub is imported on first use)."""
        with self._lock:
            if self._api is None:
                self._api = self._make_api()
            return self._api
