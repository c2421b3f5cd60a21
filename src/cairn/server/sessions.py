"""The dashboard's sign-in sessions, kept in the database (table ``dashboard_sessions``).

A browser signs in with an API key once; the server then hands it a session token (32 random
bytes) in a cookie and stores only the token's SHA-256, with the user, the key they signed in
with, and an expiry. Every page looks the session up (nothing is kept in memory, so any number
of server processes serve the dashboard):

* signing in always starts a new session (the token is rotated) and ends the one the browser
  held before;
* signing out ends the session: its token is refused from then on, by every process;
* a session ends by itself at its expiry (``session_ttl``, default 7 days), and at once when the
  key it was started with is revoked, or when an administrator ends a user's sessions.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cairn.metadata.accounts import ApiKey, DashboardSession, User
from cairn.metadata.engine import transaction
from cairn.service.sql.audit import record

T = TypeVar("T")

SESSION_TTL = 7 * 86400  # seconds a sign-in lasts unless signed out
_PURGE_AFTER = timedelta(days=1)  # ended or expired sessions are deleted after this


def _now() -> datetime:
    return datetime.now(UTC)


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class Sessions:
    def __init__(self, engine: Engine, ttl: float = SESSION_TTL) -> None:
        self.engine = engine
        self.ttl = ttl

    def _read(self, work: Callable[[Session], T]) -> T:
        return transaction(self.engine, work, write=False)

    def _write(self, work: Callable[[Session], T]) -> T:
        return transaction(self.engine, work, write=True)

    def user(self, token: str | None) -> tuple[int, str, bool] | None:
        """(user id, name, is_admin) of a live session, or None (unknown, ended, expired, or
        started with a key revoked since)."""
        if not token:
            return None

        def work(s: Session) -> tuple[int, str, bool] | None:
            row = s.execute(
                sa.select(User.id, User.name, User.is_admin)
                .join(DashboardSession, DashboardSession.user_id == User.id)
                .outerjoin(ApiKey, ApiKey.id == DashboardSession.key_id)
                .where(
                    DashboardSession.token_hash == _hash(token),
                    DashboardSession.ended_at.is_(None),
                    DashboardSession.expires_at > _now(),
                    # started with a key: that key is not revoked; with a password: no key
                    sa.or_(DashboardSession.key_id.is_(None), ApiKey.revoked_at.is_(None)),
                )
            ).one_or_none()
            return None if row is None else (row[0], row[1], row[2])

        return self._read(work)

    def start(self, api_key: str, replacing: str | None = None) -> str | None:
        """A new session for the user of ``api_key`` (None when the key is unknown or revoked),
        ending the session ``replacing`` names. Returns the new session's token."""
        token = secrets.token_urlsafe(32)
        now = _now()

        def work(s: Session) -> str | None:
            row = s.execute(
                sa.select(ApiKey.id, ApiKey.user_id, User.name)
                .join(User, User.id == ApiKey.user_id)
                .where(ApiKey.key_hash == _hash(api_key), ApiKey.revoked_at.is_(None))
            ).one_or_none()
            if row is None:  # audited without the key: a mistyped key is still a secret
                record(s, "session.sign_in_failed", "dashboard", None, None)
                return None
            record(s, "session.sign_in", row[2], None, {"key_id": row[0]}, user=row[2])
            self._open(s, token, row[1], row[0], now, replacing)
            return token

        return self._write(work)

    def start_with_password(
        self,
        user: tuple[int, str] | None,
        attempted: str,
        replacing: str | None = None,
        *,
        method: str = "password",
    ) -> str | None:
        """A new session for ``user`` ((id, name) whose password, or single sign-on, was just
        verified), or None (the sign-in of ``attempted`` failed: audited). Returns the new
        session's token."""
        token = secrets.token_urlsafe(32)
        now = _now()

        def work(s: Session) -> str | None:
            if user is None:
                failed = {"user": attempted[:255]}
                if method != "password":
                    failed["method"] = method
                record(s, "session.sign_in_failed", "dashboard", None, failed)
                return None
            record(s, "session.sign_in", user[1], None, {"method": method}, user=user[1])
            self._open(s, token, user[0], None, now, replacing)
            return token

        return self._write(work)

    def _open(
        self,
        s: Session,
        token: str,
        user_id: int,
        key_id: int | None,
        now: datetime,
        replacing: str | None,
    ) -> None:
        if replacing:
            self._end(s, replacing, now)
        s.execute(
            sa.delete(DashboardSession).where(
                sa.or_(
                    DashboardSession.expires_at < now - _PURGE_AFTER,
                    DashboardSession.ended_at < now - _PURGE_AFTER,
                )
            )
        )
        s.add(
            DashboardSession(
                token_hash=_hash(token),
                user_id=user_id,
                key_id=key_id,
                created_at=now,
                expires_at=now + timedelta(seconds=self.ttl),
                ended_at=None,
            )
        )

    @staticmethod
    def _end(s: Session, token: str, now: datetime) -> None:
        s.execute(
            sa.update(DashboardSession)
            .where(DashboardSession.token_hash == _hash(token), DashboardSession.ended_at.is_(None))
            .values(ended_at=now)
        )

    def end(self, token: str | None) -> None:
        """Sign out: the session's token is refused from now on."""
        if token:
            self._write(lambda s: self._end(s, token, _now()))

    def end_all(self, user_id: int) -> int:
        """End every live session of a user (how many were live)."""

        def work(s: Session) -> int:
            result = s.execute(
                sa.update(DashboardSession)
                .where(DashboardSession.user_id == user_id, DashboardSession.ended_at.is_(None))
                .values(ended_at=_now())
            )
            return int(getattr(result, "rowcount", 0) or 0)

        return self._write(work)


__all__ = ["SESSION_TTL", "Sessions"]
