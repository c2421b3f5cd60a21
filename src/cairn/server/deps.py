"""What every route needs: the server's settings and services, the caller, pagination."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import annotated_types as at
from fastapi import Depends, Query, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from cairn import config
from cairn.errors import InvalidInputError
from cairn.server.gate import Attempts
from cairn.server.objects import ObjectService
from cairn.server.oidc import Oidc, OidcConfig
from cairn.server.quota import Quota
from cairn.server.sessions import Sessions
from cairn.service.accounts import Accounts, Principal
from cairn.service.audit import current_actor
from cairn.service.sql import SqlRegistry

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
# every integer the API takes (ids, sizes, offsets, steps) fits the database's 64-bit integers:
# a larger one is refused with 422, like any value that does not match the schema
Int64 = Annotated[int, at.Interval(ge=INT64_MIN, le=INT64_MAX)]

MAX_PAGE = 1000  # items per page at most; a larger limit is cut to this (follow `next`)
DEFAULT_PAGE = 100


@dataclass
class ServerSettings:
    """What `cairn server` was started with. Objects live in the folder ``store``, or, when
    ``store_url`` names a bucket (s3://, gs://, az://), in packs on object storage with a local
    index cache under ``cache_dir`` (default $CAIRN_DIR/cache/stores); ``direct`` then lets
    clients move the bytes to and from the bucket on signed URLs valid ``signed_url_ttl``
    seconds.

    Limits: the largest body of each kind of request (an object, a batch upload, a JSON body, a
    dashboard form; sign-in forms take 16 KiB); ``user_quota`` bytes each user may upload
    (0: no quota; administrators have none); ``auth_failures`` failed keys or sign-ins per
    client address within ``auth_window`` seconds before it gets 429; ``session_ttl`` seconds a
    dashboard sign-in lasts.

    ``threads``: threads per server process for the blocking part of requests (database
    queries, files). More do not help: Python runs one at a time, and beyond a few they mostly
    hand the interpreter lock to each other (bench/load.py, docs/server.md "Capacity")."""

    database_url: str
    store: Path
    max_object_bytes: int = 64 << 20
    max_batch_bytes: int = 256 << 20
    max_json_bytes: int = 32 << 20
    max_form_bytes: int = 1 << 20
    user_quota: int = 1 << 40
    auth_failures: int = 20
    auth_window: float = 60.0
    session_ttl: float = 7 * 86400.0
    max_digests: int = 100_000  # per existence check or fetch
    store_url: str | None = None
    store_endpoint: str | None = None
    direct: bool = True
    signed_url_ttl: int = 900
    cache_dir: Path | None = None
    # single sign-on (OpenID Connect), by environment only: see cairn.server.oidc
    oidc_issuer: str | None = None
    oidc_client_id: str | None = None
    oidc_client_secret: str | None = None
    oidc_username_claim: str = "preferred_username"
    oidc_create_users: bool = False
    threads: int = 4

    @classmethod
    def from_env(cls) -> ServerSettings:
        """Settings from CAIRN_SERVER_* (set by `cairn server` for its worker processes),
        defaulting to the embedded store's places under CAIRN_DIR."""
        found = config.server_settings()
        found.setdefault("database_url", config.database_url())
        found.setdefault("store", config.cairn_dir() / "store")
        return cls(**found)

    def to_env(self) -> dict[str, str]:
        """The CAIRN_SERVER_* variables that give a worker process these settings."""
        return config.server_environment(
            {field: getattr(self, field) for field in config.SERVER_VARIABLES}
        )

    def store_name(self) -> str:
        """The store as shown to people (a bucket URL carries no credentials)."""
        return self.store_url or str(self.store)


@dataclass
class Services:
    settings: ServerSettings
    registry: SqlRegistry
    accounts: Accounts
    objects: ObjectService
    sessions: Sessions
    quota: Quota
    sign_ins: Attempts = field(default_factory=lambda: Attempts(0, 0.0))  # set by the Gate
    oidc: Oidc | None = None  # single sign-on, when configured

    @classmethod
    def open(cls, settings: ServerSettings) -> Services:
        registry = SqlRegistry(settings.database_url)  # brings the schema to head
        accounts = Accounts(registry.engine)
        try:
            objects = ObjectService(
                settings.store,
                accounts,
                store_url=settings.store_url,
                store_endpoint=settings.store_endpoint,
                cache_dir=settings.cache_dir or config.cairn_dir() / "cache" / "stores",
                direct=settings.direct,
                signed_url_ttl=settings.signed_url_ttl,
                max_object_bytes=settings.max_object_bytes,
                max_pack_bytes=settings.max_batch_bytes,
            )
        except BaseException:
            registry.close()
            raise
        sessions = Sessions(registry.engine, settings.session_ttl)
        quota = Quota(registry.engine, settings.user_quota)
        oidc = None
        if settings.oidc_issuer:
            if not settings.oidc_client_id or not settings.oidc_client_secret:
                registry.close()
                raise InvalidInputError(
                    "single sign-on needs CAIRN_SERVER_OIDC_CLIENT_ID and "
                    "CAIRN_SERVER_OIDC_CLIENT_SECRET next to CAIRN_SERVER_OIDC_ISSUER"
                )
            oidc = Oidc(
                OidcConfig(
                    settings.oidc_issuer,
                    settings.oidc_client_id,
                    settings.oidc_client_secret,
                    settings.oidc_username_claim,
                    settings.oidc_create_users,
                )
            )
        return cls(settings, registry, accounts, objects, sessions, quota, oidc=oidc)

    def close(self) -> None:
        if self.oidc is not None:
            self.oidc.close()
        self.objects.close()
        self.registry.close()


# The two dependencies below are coroutines so that FastAPI runs them on the event loop: a
# plain function would cost each request a hand-off to the thread pool and back (it showed as a
# seventh of the server's CPU under load). Neither blocks, except an app without the `Gate`.


async def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


_bearer = HTTPBearer(auto_error=False, description="an API key: `Authorization: Bearer cairn_...`")


async def principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """The caller the `Gate` authenticated before reading the body (or, for an app without
    it, the key's user)."""
    found: Principal | None = getattr(request.state, "principal", None)
    if found is None:
        token = credentials.credentials if credentials else request.headers.get("x-cairn-key")
        accounts: Accounts = request.app.state.services.accounts
        found = await run_in_threadpool(accounts.authenticate, token)
    actor = current_actor()
    if actor is not None and found.name is not None:
        actor.user = found.name  # the audit log's "who" for this request
    return found


Svc = Annotated[Services, Depends(services)]
Caller = Annotated[Principal, Depends(principal)]
Limit = Annotated[
    int, Query(description=f"items per page (at most {MAX_PAGE})", ge=INT64_MIN, le=INT64_MAX)
]
Offset = Annotated[int, Query(description="items to skip", ge=INT64_MIN, le=INT64_MAX)]


def page_window(limit: int, offset: int) -> tuple[int, int]:
    """(limit cut to MAX_PAGE, offset), validated."""
    if limit < 0:
        raise InvalidInputError(f"limit must be at least 0, not {limit}")
    if offset < 0:
        raise InvalidInputError(f"offset must be at least 0, not {offset}")
    return min(limit, MAX_PAGE), offset


def page(
    request: Request, items: list[Any], limit: int, offset: int, *, more: bool
) -> dict[str, Any]:
    """A page of a list: ``items``, and ``next`` (the URL of the next page, or null)."""
    following = None
    if more and limit > 0:
        url = request.url.include_query_params(limit=limit, offset=offset + len(items))
        following = url.path + "?" + url.query
    return {"items": items, "limit": limit, "offset": offset, "next": following}


def slice_page(request: Request, items: list[Any], limit: int, offset: int) -> dict[str, Any]:
    """A page of a list held in full."""
    limit, offset = page_window(limit, offset)
    chosen = items[offset : offset + limit]
    more = offset + len(chosen) < len(items) and limit > 0
    result = page(request, chosen, limit, offset, more=more)
    result["total"] = len(items)
    return result


__all__ = [
    "DEFAULT_PAGE",
    "INT64_MAX",
    "INT64_MIN",
    "MAX_PAGE",
    "Caller",
    "Int64",
    "Limit",
    "Offset",
    "ServerSettings",
    "Services",
    "Svc",
    "page",
    "page_window",
    "principal",
    "services",
    "slice_page",
]
