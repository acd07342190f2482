"""Loom's one error tree.

Every domain error subclasses :class:`LoomError` *and* the builtin it resembles, so callers
that know nothing of Loom still catch them sensibly (``except LookupError``), and the API's one
exception handler maps each class to one HTTP status by its ``code``.
"""

from __future__ import annotations


class LoomError(Exception):
    """Base of every error Loom raises on purpose. ``code`` is a stable machine-readable tag."""

    code = "loom_error"

    def __init__(self, message: str, **details: object) -> None:
        super().__init__(message)
        self.message = message
        self.details = details

    def __str__(self) -> str:
        return self.message


class NotFoundError(LoomError, LookupError):
    """A named thing (adapter, version, method, base model, job) does not exist or is not visible."""

    code = "not_found"


class UnknownNameError(NotFoundError):
    """A name not in a registry; the message lists the names that exist."""

    code = "unknown_name"


class InvalidInputError(LoomError, ValueError):
    """Input that is malformed or out of range; the message names the field and the value."""

    code = "invalid_input"


class InvalidAdapterError(InvalidInputError):
    """An adapter folder or file that is not a valid LoRA adapter."""

    code = "invalid_adapter"


class UnsupportedFeatureError(InvalidAdapterError):
    """A PEFT feature Loom does not handle (DoRA, modules_to_save, embedding LoRA, bias ...)."""

    code = "unsupported_feature"


class IncompatibleAdaptersError(InvalidInputError):
    """Adapters that cannot be combined, or an adapter that does not fit its base model."""

    code = "incompatible"


class ConflictError(LoomError, ValueError):
    """The request conflicts with existing state (a name taken by another owner, ...)."""

    code = "conflict"


class AmbiguousError(ConflictError):
    """A short id or prefix that matches more than one thing; ``details['candidates']`` lists them."""

    code = "ambiguous"


class PayloadTooLargeError(InvalidInputError):
    """An upload over the configured size limit."""

    code = "payload_too_large"


class AuthenticationError(LoomError, PermissionError):
    """No credentials, or credentials that are not valid (``credential``: :data:`HF_CREDENTIAL` when the
    credential is a Hugging Face token, not Loom's; absent for Loom's own)."""

    code = "unauthenticated"


#: the ``credential`` detail of an :class:`AuthenticationError` about a Hugging Face token (not a Loom token)
HF_CREDENTIAL = "huggingface"


class PermissionDeniedError(LoomError, PermissionError):
    """Valid credentials that are not allowed to do this."""

    code = "forbidden"


class RateLimitedError(LoomError, RuntimeError):
    """Too many attempts (failed authentications) from one client; ``details["retry_after"]`` says when to retry."""

    code = "rate_limited"


class StorageError(LoomError, OSError):
    """The blob store or the index failed or is inconsistent."""

    code = "storage_error"


class StorageUnavailableError(StorageError):
    """The blob store cannot be reached or refused the request (S3 down, bad credentials); retry later."""

    code = "storage_unavailable"


class UpstreamError(LoomError, ConnectionError):
    """A remote service (the Hugging Face Hub) failed or refused."""

    code = "upstream_error"


class TooManyRequestsError(LoomError, RuntimeError):
    """A bound on concurrent work is reached (queued rows, a user's requests); retry after ``retry_after`` s."""

    code = "too_many_requests"


class RequestCancelledError(LoomError, RuntimeError):
    """The client went away before its request finished; its work was stopped (logged as 499)."""

    code = "request_cancelled"


class ClusterUnavailableError(LoomError, ConnectionError):
    """The Ray cluster (``LOOM_RAY_ADDRESS``) cannot be reached, or an inference replica died mid-request."""

    code = "cluster_unavailable"
