"""The caller's API tokens: list them, revoke one (create them with ``loom token create``)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Path
from pydantic import BaseModel

from hub.api.deps import HubDep, UserDep
from hub.api.guards import INT64_MAX
from hub.core.errors import AuthenticationError
from hub.db.models import ApiToken, User

router = APIRouter(prefix="/api/v1/tokens", tags=["tokens"])


class TokenOut(BaseModel):
    """A token as its owner may see it: never the token itself (only its hash is stored), its first characters."""

    id: int
    prefix: str
    label: str | None
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @classmethod
    def of(cls, t: ApiToken) -> TokenOut:
        return cls(id=t.id, prefix=t.prefix, label=t.label, created_at=t.created_at, last_used_at=t.last_used_at,
                   revoked_at=t.revoked_at)


class TokenList(BaseModel):
    items: list[TokenOut]


def _signed_in(user: User | None) -> User:
    if user is None:
        raise AuthenticationError("listing or revoking tokens needs an API token (Authorization: Bearer ...)")
    return user


@router.get("", response_model=TokenList, operation_id="list_tokens", summary="Your API tokens (revoked included)")
def list_tokens(hub: HubDep, user: UserDep) -> TokenList:
    return TokenList(items=[TokenOut.of(t) for t in hub.users.tokens(_signed_in(user))])


@router.delete("/{token_id}", response_model=TokenOut, operation_id="revoke_token",
               summary="Revoke one of your API tokens (it stops working at once)")
def revoke_token(hub: HubDep, user: UserDep,
                 token_id: Annotated[int, Path(ge=1, le=INT64_MAX)]) -> TokenOut:
    return TokenOut.of(hub.users.revoke_token(_signed_in(user), token_id))
