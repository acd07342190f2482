"""Named leases in the database: one process of a hub at a time runs a piece of hub-wide background work.

A lease is a row (:class:`hub.db.models.Lease`) naming its holder and when it expires. It is taken by an
``UPDATE ... WHERE`` that matches only an expired lease or one the caller already holds, or by inserting the row
when there is none; both are atomic on SQLite and PostgreSQL, so of two processes racing for it at most one gets
it. The holder renews it while it works and deletes it when done; a holder that crashed blocks the others only
until it expires. Each call commits its own transaction, so other processes see a lease at once. Times are the
callers' clocks: the ttl must be much longer than the clock skew between hosts.
"""

from __future__ import annotations

import os
import socket
import uuid
from datetime import datetime, timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from hub.core.errors import InvalidInputError
from hub.db.models import Lease, utcnow


def process_holder() -> str:
    """A holder name unique to this process and call: ``host:pid:random``."""
    return f"{socket.gethostname()[:80]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DbLease:
    """Lease ``name`` held as ``holder`` (default :func:`process_holder`) for ``ttl_s`` seconds at a time.

    Raises:
        InvalidInputError: an empty or overlong name or holder, or a ttl that is not positive.
    """

    def __init__(self, sessions: sessionmaker[Session], name: str, ttl_s: float, holder: str | None = None) -> None:
        holder = holder or process_holder()
        if not 0 < len(name) <= 64:
            raise InvalidInputError(f"lease name must be 1-64 characters, got {name!r}")
        if not 0 < len(holder) <= 128:
            raise InvalidInputError(f"lease holder must be 1-128 characters, got {holder!r}")
        if not ttl_s > 0:
            raise InvalidInputError(f"ttl_s must be > 0, got {ttl_s}")
        self.sessions, self.name, self.holder, self.ttl_s = sessions, name, holder, float(ttl_s)

    def acquire(self) -> bool:
        """Take the lease for ``ttl_s`` from now: True if it was free, expired or already ours."""
        now = utcnow()
        until = now + timedelta(seconds=self.ttl_s)
        with self.sessions.begin() as s:
            res = s.execute(update(Lease)
                            .where(Lease.name == self.name, or_(Lease.holder == self.holder, Lease.expires_at < now))
                            .values(holder=self.holder, expires_at=until))
            if res.rowcount:  # type: ignore[attr-defined]
                return True
        try:
            with self.sessions.begin() as s:
                s.add(Lease(name=self.name, holder=self.holder, expires_at=until))
            return True
        except IntegrityError:  # another holder has it (perhaps since just now)
            return False

    def renew(self) -> bool:
        """Extend our lease to ``ttl_s`` from now: False if it is no longer ours (it expired and was taken)."""
        with self.sessions.begin() as s:
            res = s.execute(update(Lease).where(Lease.name == self.name, Lease.holder == self.holder)
                            .values(expires_at=utcnow() + timedelta(seconds=self.ttl_s)))
            return bool(res.rowcount)  # type: ignore[attr-defined]

    def release(self) -> None:
        """Give the lease up (no-op when another process holds it now)."""
        with self.sessions.begin() as s:
            s.execute(delete(Lease).where(Lease.name == self.name, Lease.holder == self.holder))

    def current(self) -> tuple[str, datetime] | None:
        """``(holder, expires_at)`` of the lease's row, or None when there is none (an expired row is returned)."""
        with self.sessions() as s:
            row = s.get(Lease, self.name)
            return None if row is None else (row.holder, row.expires_at)
