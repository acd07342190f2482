"""Calls to the Hub with backoff on rate limits and transient server errors, mapped to Loom errors.

huggingface_hub retries some calls itself (listing, LFS, file bodies) but not ``model_info``,
``create_repo`` or ``create_commit``; :func:`call_hub` wraps any call the same way. A 429's wait
comes from ``Retry-After`` or the IETF ``RateLimit`` header (``"api";r=0;t=55``); a wait longer
than the policy allows is not slept through but reported at once as an ``UpstreamError`` whose
``details["retry_after"]`` tells the caller when to come back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from hub.core.errors import UpstreamError
from hub.hf_sync.errors import CallContext, status_of, translate

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRY_STATUSES = (429, 500, 502, 503, 504)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to retry.

    Attributes:
        attempts: total tries (1 = no retry).
        base_delay: first backoff wait in seconds when the server gives no hint; doubles each retry.
        max_delay: the longest single wait; a server asking for more is reported instead of waited for.
        sleep: the sleep function (injectable for tests and async callers).
    """

    attempts: int = 4
    base_delay: float = 1.0
    max_delay: float = 30.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_delay < 0 or self.max_delay < 0:
            raise ValueError(f"delays must be >= 0, got base {self.base_delay}, max {self.max_delay}")


DEFAULT_POLICY = RetryPolicy()


def server_wait(exc: BaseException) -> float | None:
    """Seconds the server asked us to wait (``RateLimit`` t=, else ``Retry-After``), or None."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    from huggingface_hub.utils import parse_ratelimit_headers

    info = parse_ratelimit_headers(headers)
    if info is not None and info.remaining == 0:
        return float(info.reset_in_seconds)
    value = headers.get("Retry-After")
    if value is not None and value.strip().isdigit():
        return float(value.strip())
    return None


def call_hub(fn: Callable[..., T], *args: Any, ctx: CallContext, policy: RetryPolicy = DEFAULT_POLICY,
             **kwargs: Any) -> T:
    """Run ``fn(*args, **kwargs)``; retry 429/5xx with backoff; map any failure to a LoomError.

    Raises:
        LoomError: the translated error (``UpstreamError`` when retries are exhausted).
    """
    delay = policy.base_delay
    for attempt in range(1, policy.attempts + 1):
        try:
            return fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure is translated below
            status = status_of(exc)
            if status not in RETRY_STATUSES:
                raise translate(exc, ctx) from None
            asked = server_wait(exc)
            wait = asked if asked is not None else delay
            if asked is not None and asked > policy.max_delay:
                raise UpstreamError(
                    f"rate limited by the Hugging Face Hub while {ctx.action} {ctx.where}; "
                    f"retry after {int(asked)} s", repo_id=ctx.repo_id, status=status, retry_after=asked,
                ) from None
            if attempt == policy.attempts:
                err = translate(exc, ctx)
                err.message = f"{err.message} (gave up after {policy.attempts} attempts)"
                err.args = (err.message,)
                err.details.setdefault("retry_after", wait)
                raise err from None
            log.warning("Hub answered %s while %s %s; retry %d/%d in %.1f s", status, ctx.action, ctx.where,
                        attempt, policy.attempts - 1, wait)
            policy.sleep(wait)
            delay = min(policy.max_delay, delay * 2)
    raise AssertionError("unreachable")  # pragma: no cover
