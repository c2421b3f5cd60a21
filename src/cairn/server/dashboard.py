"""The dashboard inside `cairn server`: the server's registry, object store and accounts.

`server_dashboard()` is the router the server's app factory includes at ``/``. Every page asks
the same `Accounts` the API does: a browser signs in with an API key and gets a server-side
session (`cairn.server.sessions`: checked on each request, ended by signing out, by its expiry,
or by revoking the key); a project the user has no role in does not exist for them; editing
needs write access. A server without users runs open, as its API does.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import APIRouter, Request

from cairn.dashboard.app import dashboard_router
from cairn.dashboard.auth import SignIn, Viewer
from cairn.errors import CairnError, UnsupportedError
from cairn.objects.store import ObjectStore
from cairn.service.audit import current_actor
from cairn.service.registry import Registry

if TYPE_CHECKING:
    from cairn.server.deps import Services
    from cairn.service.accounts import Accounts


class ServerAccess:
    """The server's accounts and sessions as the dashboard's `Access`."""

    def __init__(self, services: Services) -> None:
        self.accounts: Accounts = services.accounts
        self.services = services

    def has_accounts(self) -> bool:
        return self.accounts.has_users()

    def viewer(self, session: str | None) -> Viewer | None:
        from cairn.service.accounts import Principal

        found = self.services.sessions.user(session)
        if found is None:
            return None if self.accounts.has_users() else Viewer.anonymous()
        user_id, name, is_admin = found
        actor = current_actor()
        if actor is not None:
            actor.user = name  # the audit log's "who" for edits made in the dashboard
        principal = Principal(user_id=user_id, name=name, is_admin=is_admin)
        return Viewer(name, self.accounts.roles(principal))

    def sign_in(self, key: str, *, address: str, replacing: str | None) -> SignIn:
        attempts = self.services.sign_ins
        retry = attempts.retry_after(address)
        if retry is not None:
            return SignIn(None, retry_after=retry)
        token = self.services.sessions.start(key, replacing) if key else None
        if token is None:
            attempts.fail(address)
            return SignIn(None)
        return SignIn(token, max_age=int(self.services.sessions.ttl))

    def sign_in_password(
        self, user: str, password: str, *, address: str, replacing: str | None
    ) -> SignIn:
        attempts = self.services.sign_ins
        retry = attempts.retry_after(address)
        if retry is not None:
            return SignIn(None, retry_after=retry)
        verified = self.accounts.verify_password(user, password) if user and password else None
        token = self.services.sessions.start_with_password(verified, user, replacing)
        if token is None:
            attempts.fail(address)
            return SignIn(None)
        return SignIn(token, max_age=int(self.services.sessions.ttl))

    def sso(self) -> bool:
        return self.services.oidc is not None

    def sso_start(self, redirect_uri: str, next_url: str) -> tuple[str, str]:
        if self.services.oidc is None:
            raise UnsupportedError("single sign-on is not set up on this server")
        return self.services.oidc.start(redirect_uri, next_url)

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
        from cairn.server.oidc import find_user

        oidc = self.services.oidc
        if oidc is None:
            return SignIn(None, error="single sign-on is not set up on this server")
        attempts = self.services.sign_ins
        retry = attempts.retry_after(address)
        if retry is not None:
            return SignIn(None, retry_after=retry)
        sessions = self.services.sessions
        try:
            name, target = oidc.finish(code, state, saved, redirect_uri)
            user = find_user(self.accounts, name, oidc.config.create_users)
        except CairnError as exc:
            attempts.fail(address)
            sessions.start_with_password(None, "", method="sso")
            return SignIn(None, error=str(exc))
        token = sessions.start_with_password(user, user[1], replacing, method="sso")
        return SignIn(token, max_age=int(sessions.ttl), next=target)

    def sign_out(self, session: str | None) -> None:
        self.services.sessions.end(session)


def _services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


def _registry(request: Request) -> Registry:
    return _services(request).registry


def _objects(request: Request) -> ObjectStore:
    store: ObjectStore = _services(request).objects.store
    return store


def _access(request: Request) -> ServerAccess:
    return ServerAccess(_services(request))


def server_dashboard(prefix: str = "") -> APIRouter:
    """The dashboard's routes over the services of the app they are included in
    (``app.state.services``)."""
    return dashboard_router(_registry, _objects, _access, prefix=prefix)


__all__ = ["ServerAccess", "server_dashboard"]
