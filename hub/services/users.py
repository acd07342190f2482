"""Users and API tokens. Tokens are shown once; only their sha256 and an 8-character prefix are kept."""

from __future__ import annotations

import hashlib
import secrets

from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import AuthenticationError, NotFoundError
from hub.db.models import ApiToken, User, utcnow
from hub.repositories import users as repo
from hub.services.auth_throttle import AuthThrottle
from hub.services.validation import check_name_part

TOKEN_PREFIX = "loom_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserService:
    """Create, list and revoke users' tokens; resolve a bearer token to its user.

    Args:
        sessions: the DB session factory. throttle: counts failed authentications per client (None: no limit).
    """

    def __init__(self, sessions: sessionmaker[Session], throttle: AuthThrottle | None = None) -> None:
        self.sessions = sessions
        self.throttle = throttle

    def ensure_user(self, name: str) -> User:
        """The user ``name``, created if needed."""
        check_name_part(name, "user")
        with self.sessions.begin() as s:
            user = repo.get_user(s, name)
            if user is None:
                user = User(name=name)
                s.add(user)
                s.flush()
            return user

    def get(self, user_id: int | None) -> User:
        """The user with id ``user_id`` (detached from its session).

        Raises:
            NotFoundError: no such user (e.g. the owner of a queued job was deleted).
        """
        with self.sessions() as s:
            user = s.get(User, user_id) if user_id is not None else None
            if user is None:
                raise NotFoundError(f"user #{user_id} does not exist")
            s.expunge(user)
            return user

    def create_token(self, user_name: str, label: str | None = None) -> tuple[User, str]:
        """Create ``user_name`` if needed and a new token for it; returns (user, the token in clear)."""
        check_name_part(user_name, "user")
        token = TOKEN_PREFIX + secrets.token_urlsafe(32)
        with self.sessions.begin() as s:
            user = repo.get_user(s, user_name)
            if user is None:
                user = User(name=user_name)
                s.add(user)
                s.flush()
            s.add(ApiToken(user_id=user.id, token_hash=hash_token(token), prefix=token[:12], label=label))
        return user, token

    def authenticate(self, token: str | None, client: str | None = None) -> User | None:
        """The user of ``token``; None when no token is given.

        Args:
            client: the caller's address, for throttling failed attempts (None: not throttled).

        Raises:
            AuthenticationError: a token that is unknown or revoked.
            RateLimitedError: ``client`` sent too many invalid tokens lately.
        """
        if not token:
            return None
        if self.throttle is not None:
            self.throttle.check(client)
        with self.sessions.begin() as s:
            row = repo.get_token(s, hash_token(token))
            if row is None:
                if self.throttle is not None:
                    self.throttle.failed(client)
                raise AuthenticationError("the API token is not valid")
            now = utcnow()
            if row.last_used_at is None or (now - row.last_used_at).total_seconds() > 300:
                row.last_used_at = now  # throttled: not a write on every request
            return row.user

    def tokens(self, user: User) -> list[ApiToken]:
        """``user``'s tokens, revoked ones included, oldest first (never the token itself: it is not stored)."""
        with self.sessions() as s:
            return repo.list_tokens(s, user.id)

    def revoke_token(self, user: User, token_id: int) -> ApiToken:
        """Revoke ``user``'s token ``token_id`` (again: no change).

        Raises:
            NotFoundError: no such token of ``user`` (another user's token is not revealed).
        """
        with self.sessions.begin() as s:
            row = s.get(ApiToken, token_id)
            if row is None or row.user_id != user.id:
                raise NotFoundError(f"you have no token #{token_id}", field="token_id")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
            return row
