"""FastAPI dependencies: the hub of the app, and the caller (from ``Authorization: Bearer <token>``)."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from hub.core.errors import AuthenticationError
from hub.db.models import User
from hub.services.container import Hub

_bearer = HTTPBearer(auto_error=False, description="An API token from `loom token create USER`.")


def get_hub(request: Request) -> Hub:
    return request.app.state.hub


def current_user(
    request: Request, creds: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> User | None:
    """The caller, or None when anonymous. A token that is present but not valid is a 401."""
    header = request.headers.get("authorization")
    if header and creds is None:
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    client = request.client.host if request.client else None
    return get_hub(request).users.authenticate(creds.credentials if creds else None, client)


def writer(request: Request, user: Annotated[User | None, Depends(current_user)]) -> User:
    """The caller of a write; anonymous writes become user ``anonymous`` only if the hub allows them."""
    if user is not None:
        return user
    hub = get_hub(request)
    if hub.settings.allow_anonymous_publish:
        return hub.users.ensure_user("anonymous")
    raise AuthenticationError("this needs an API token (Authorization: Bearer <token>)")


HubDep = Annotated[Hub, Depends(get_hub)]
UserDep = Annotated[User | None, Depends(current_user)]
WriterDep = Annotated[User, Depends(writer)]
