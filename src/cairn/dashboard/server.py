"""The dashboard inside `cairn server`: the server's registry, object store and accounts.

`server_dashboard()` is the router the server's app factory includes at ``/``. Every page asks
the same `Accounts` the API does: a browser signs in with an API key (kept in an HttpOnly
cookie and checked on each request, so a revoked key stops working at once); a project the
user has no role in does not exist for them; editing needs write access. A server without users
runs open, as its API does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request

from cairn.dashboard.app import dashboard_router
from cairn.dashboard.auth import Viewer
from cairn.objects.store import ObjectStore
from cairn.service.registry import Registry

if TYPE_CHECKING:
    from cairn.server.deps import Services
    from cairn.service.accounts import Accounts


class ServerAccess:
    """`cairn.service.accounts.Accounts` as the dashboard's `Access`."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def has_accounts(self) -> bool:
        return self.accounts.has_users()

    def viewer(self, key: str | None) -> Viewer | None:
        from cairn.errors import AuthenticationError

        try:
            principal = self.accounts.authenticate(key)
        except AuthenticationError:
            return None
        if principal.open:
            return Viewer.anonymous()
        return Viewer(principal.name, self.accounts.roles(principal))


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _registry(request: Request) -> Registry:
    return _services(request).registry


def _objects(request: Request) -> ObjectStore:
    store: ObjectStore = _services(request).objects.store
    return store


def _access(request: Request) -> ServerAccess:
    return ServerAccess(_services(request).accounts)


def server_dashboard(prefix: str = "") -> APIRouter:
    """The dashboard's routes over the services of the app they are included in
    (``app.state.services``)."""
    return dashboard_router(_registry, _objects, _access, prefix=prefix)


__all__ = ["ServerAccess", "server_dashboard"]
