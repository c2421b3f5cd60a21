"""Who is looking: the dashboard's view of accounts and roles.

The dashboard does not own accounts. It is given an `Access` (the server adapts its own
accounts to it, see `cairn.server.dashboard`); without one it runs open, like a server without
users: everyone acts as an anonymous administrator.

A browser signs in with an API key once and gets a **session**: a random token in a cookie
(``HttpOnly``, ``SameSite=Lax``, ``Secure`` when the page came over HTTPS), while the server
keeps only the token's hash (`cairn.server.sessions`). Each request looks the session up, so
signing out, the session's expiry, and revoking the key it was started with end it at once, in
every server process. Signing in rotates the token. Failed sign-ins are rate-limited per client
address (429 with ``Retry-After``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

from cairn.errors import UnsupportedError

ROLES = ("read", "write", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
COOKIE = "cairn_session"


@dataclass(frozen=True)
class SignIn:
    """The outcome of a sign-in: ``token`` of the new session (None: the key is not valid),
    how many seconds it lasts, or ``retry_after`` seconds to wait (too many failed attempts)."""

    token: str | None
    max_age: int = 0
    retry_after: int | None = None
    error: str | None = None  # why a single sign-on failed
    next: str | None = None  # where a single sign-on was going


@dataclass(frozen=True)
class Viewer:
    """The current user. ``roles`` maps project -> role; None means every project as admin
    (server administrators, and everyone on an open server)."""

    name: str | None
    roles: Mapping[str, str] | None
    open: bool = False  # no accounts at all: nobody signs in

    @staticmethod
    def anonymous() -> Viewer:
        return Viewer(name=None, roles=None, open=True)

    @property
    def is_admin(self) -> bool:
        return self.roles is None

    def role(self, project: str) -> str | None:
        if self.roles is None:
            return "admin"
        return self.roles.get(project)

    def can(self, project: str, need: str) -> bool:
        role = self.role(project)
        return role is not None and _RANK[role] >= _RANK[need]


class Access(Protocol):
    """What the dashboard asks of an account system."""

    def has_accounts(self) -> bool:
        """False while nobody can sign in (open mode: every request is an anonymous admin)."""
        ...

    def viewer(self, session: str | None) -> Viewer | None:
        """The viewer a session token names, or None when it is missing, unknown, ended or
        expired (on a server with accounts)."""
        ...

    def sign_in(self, key: str, *, address: str, replacing: str | None) -> SignIn:
        """Start a session for the user of API key ``key`` (ending the session ``replacing``),
        counting a failure against ``address``."""
        ...

    def sign_in_password(
        self, user: str, password: str, *, address: str, replacing: str | None
    ) -> SignIn:
        """Start a session for ``user`` when ``password`` is theirs, as `sign_in` does."""
        ...

    def sso(self) -> bool:
        """Whether single sign-on (OpenID Connect) is set up."""
        ...

    def sso_start(self, redirect_uri: str, next_url: str) -> tuple[str, str]:
        """(the provider's sign-in URL, the state to keep in a cookie until it answers)."""
        ...

    def sso_finish(
        self,
        code: str,
        state: str,
        saved: str | None,
        redirect_uri: str,
        *,
        address: str,
        replacing: str | None,
    ) -> SignIn:
        """Finish a single sign-on: a session for the user the provider vouches for."""
        ...

    def sign_out(self, session: str | None) -> None:
        """End the session (its token is refused from now on)."""
        ...


class OpenAccess:
    """No accounts: everyone may read and write everything (the standalone dashboard)."""

    def has_accounts(self) -> bool:
        return False

    def viewer(self, session: str | None) -> Viewer | None:
        return Viewer.anonymous()

    def sign_in(self, key: str, *, address: str, replacing: str | None) -> SignIn:
        return SignIn(None)

    def sign_in_password(
        self, user: str, password: str, *, address: str, replacing: str | None
    ) -> SignIn:
        return SignIn(None)

    def sso(self) -> bool:
        return False

    def sso_start(self, redirect_uri: str, next_url: str) -> tuple[str, str]:
        raise UnsupportedError("single sign-on needs a server with accounts")

    def sso_finish(
        self,
        code: str,
        state: str,
        saved: str | None,
        redirect_uri: str,
        *,
        address: str,
        replacing: str | None,
    ) -> SignIn:
        return SignIn(None, error="single sign-on needs a server with accounts")

    def sign_out(self, session: str | None) -> None:
        return None


__all__ = ["COOKIE", "ROLES", "Access", "OpenAccess", "SignIn", "Viewer"]
