"""Who is looking: the dashboard's view of accounts and roles.

The dashboard does not own accounts. It is given an `Access` (the server adapts its own
accounts to it, see `cairn.dashboard.server`); without one it runs open, like a server without
users: everyone acts as an anonymous administrator.

A signed-in browser holds the API key it signed in with in an HttpOnly cookie, checked on every
request against the same accounts the API uses (nothing is kept in memory, so any number of
server processes can serve the dashboard, and a revoked key stops working at once).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

ROLES = ("read", "write", "admin")
_RANK = {role: i for i, role in enumerate(ROLES)}
COOKIE = "cairn_key"


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

    def viewer(self, key: str | None) -> Viewer | None:
        """The viewer an API key names, or None when the key is missing, unknown or revoked
        (on a server with accounts)."""
        ...


class OpenAccess:
    """No accounts: everyone may read and write everything (the standalone dashboard)."""

    def has_accounts(self) -> bool:
        return False

    def viewer(self, key: str | None) -> Viewer | None:
        return Viewer.anonymous()


__all__ = ["COOKIE", "ROLES", "Access", "OpenAccess", "Viewer"]
