"""Translate huggingface_hub and transport errors into Loom's domain errors, with clear messages.

Messages name the repo and revision and never include request headers, so a token cannot leak
through an error. The original exception is not chained (``from None``) for the same reason:
its ``response.request`` holds the Authorization header.
"""

from __future__ import annotations

from dataclasses import dataclass

from hub.core.errors import (
    HF_CREDENTIAL,
    AuthenticationError,
    LoomError,
    NotFoundError,
    PermissionDeniedError,
    UpstreamError,
)


@dataclass(frozen=True)
class CallContext:
    """What a Hub call was about, for error messages: the repo, the revision and whether a token was sent."""

    action: str
    repo_id: str | None = None
    revision: str | None = None
    authenticated: bool = False

    @property
    def where(self) -> str:
        if self.repo_id is None:
            return "the Hugging Face Hub"
        return f"{self.repo_id}@{self.revision}" if self.revision else self.repo_id


def status_of(exc: BaseException) -> int | None:
    """The HTTP status of a huggingface_hub HTTP error, else None."""
    response = getattr(exc, "response", None)
    status = getattr(response, "status_code", None)
    return status if isinstance(status, int) else None


def translate(exc: BaseException, ctx: CallContext) -> LoomError:
    """Map ``exc`` (raised while doing ``ctx.action``) to a :class:`LoomError` subclass."""
    if isinstance(exc, LoomError):
        return exc
    import httpx2
    from huggingface_hub import errors as hf

    repo, where = ctx.repo_id, ctx.where
    status = status_of(exc)
    if isinstance(exc, hf.GatedRepoError):
        if not ctx.authenticated:
            return AuthenticationError(
                f"{repo} is a gated repository: {ctx.action} needs a Hugging Face token of an account that "
                "has accepted its access conditions", repo_id=repo, credential=HF_CREDENTIAL)
        return PermissionDeniedError(
            f"{repo} is a gated repository and this token's account has not been granted access; "
            f"request access on the repository page, then retry", repo_id=repo)
    if isinstance(exc, hf.RevisionNotFoundError):
        return NotFoundError(f"revision {ctx.revision!r} not found in Hugging Face repository {repo}",
                             repo_id=repo, revision=ctx.revision)
    if isinstance(exc, hf.RepositoryNotFoundError):
        if status == 401 and not ctx.authenticated:
            return AuthenticationError(
                f"Hugging Face repository {repo} is not visible without a token: it does not exist, or it "
                "is private or gated; check the id, or set a token that can read it", repo_id=repo, credential=HF_CREDENTIAL)
        return NotFoundError(f"Hugging Face repository {repo} not found (or not visible to this token)",
                             repo_id=repo)
    if isinstance(exc, hf.DisabledRepoError):
        return PermissionDeniedError(f"Hugging Face repository {repo} is disabled", repo_id=repo)
    if isinstance(exc, hf.RemoteEntryNotFoundError):
        return NotFoundError(f"a file listed in {where} could not be found on the Hub", repo_id=repo)
    if isinstance(exc, hf.LocalEntryNotFoundError):  # raised by hf_hub_download when the HEAD call failed
        return UpstreamError(f"could not reach the Hugging Face Hub while {ctx.action} {where}; retry later",
                             repo_id=repo)
    if status == 401:
        if ctx.authenticated:
            return AuthenticationError("the Hugging Face token was refused (invalid or expired)", repo_id=repo, credential=HF_CREDENTIAL)
        return AuthenticationError(f"{ctx.action} {where} needs a Hugging Face token", repo_id=repo, credential=HF_CREDENTIAL)
    if status == 403:
        return PermissionDeniedError(
            f"the Hugging Face token is not allowed to do this ({ctx.action} {where}); it may lack write "
            "access", repo_id=repo)
    if status == 429:
        return UpstreamError(f"rate limited by the Hugging Face Hub while {ctx.action} {where}; retry later",
                             repo_id=repo, status=429)
    if status is not None:
        return UpstreamError(f"the Hugging Face Hub answered HTTP {status} while {ctx.action} {where}",
                             repo_id=repo, status=status)
    if isinstance(exc, httpx2.TransportError | ConnectionError | TimeoutError | OSError):
        return UpstreamError(
            f"network failure while {ctx.action} {where} ({type(exc).__name__}); nothing was kept, retry",
            repo_id=repo)
    return UpstreamError(f"unexpected error while {ctx.action} {where}: {type(exc).__name__}", repo_id=repo)
