"""The FastAPI application: routes under ``/api/v1``, one JSON error shape, body size limits.

``create_app(settings)`` builds it for a database and a store (a folder or a bucket);
``app_from_env`` is the factory uvicorn's worker processes call (`cairn server --workers N`),
reading CAIRN_SERVER_*.
The application keeps nothing in memory another process would need: any number of processes
(and machines sharing the store folder or bucket) may serve one PostgreSQL database.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Receive, Scope, Send

from cairn._version import __version__
from cairn.errors import CairnError, UnavailableError
from cairn.server import (
    routes_accounts,
    routes_objects,
    routes_parts,
    routes_registries,
    routes_registry,
    routes_retention,
    routes_webhooks,
)
from cairn.server.backfill import bind_unbound, bind_unbound_links
from cairn.server.dashboard import server_dashboard
from cairn.server.deps import Caller, ServerSettings, Services
from cairn.server.gate import Gate, json_error
from cairn.service.audit import Actor, acting
from cairn.service.sql.retention import RetentionScheduler
from cairn.service.webhooks import WebhookWorker
from cairn.wire import API_PREFIX, error_detail, status_for

log = logging.getLogger("cairn.server")

OPEN_WARNING = (
    "WARNING: this server has no users, so it runs OPEN: anyone who can reach it may read and "
    "write everything. Create the first administrator with `cairn server create-admin NAME`."
)


def _json_error(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    return json_error(status, code, message, detail)


def _unavailable(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) says the database could not be reached."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, sa.exc.OperationalError | sa.exc.InterfaceError):
            return True
        if isinstance(seen, sa.exc.DBAPIError) and seen.connection_invalidated:
            return True
        seen = seen.__cause__ or seen.__context__
    return False


def _fault(request: Request, exc: BaseException) -> JSONResponse:
    """A server fault: logged in full (with an id); the client gets the id, never the
    message (it may name the database URL, a path, or other internals)."""
    incident = secrets.token_hex(4)
    if _unavailable(exc):
        log.error(
            "%s %s: the database is unavailable [%s]: %s",
            request.method,
            request.url.path,
            incident,
            exc,
        )
        return json_error(
            503,
            UnavailableError.code,
            f"the server cannot reach its database right now; retry in a moment (error id "
            f"{incident} in the server's log)",
            {"incident": incident},
            headers={"Retry-After": "2"},
        )
    log.error("%s %s failed [%s]", request.method, request.url.path, incident, exc_info=exc)
    code = exc.code if isinstance(exc, CairnError) else "internal"
    return json_error(
        500,
        code,
        f"internal server error ({type(exc).__name__}); the server's log has the details under "
        f"error id {incident}",
        {"incident": incident},
    )


async def _cairn_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CairnError)
    status = status_for(exc)
    if status >= 500:
        return _fault(request, exc)
    return _json_error(status, exc.code, str(exc), error_detail(exc) or None)


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = jsonable_encoder(exc.errors(), custom_encoder={bytes: lambda b: repr(b)})
    if any(p.get("type") == "json_invalid" for p in problems):
        return _json_error(400, "invalid_input", "the request body is not valid JSON", problems)
    parts = []
    for p in problems[:5]:
        where = ".".join(str(x) for x in p.get("loc", ()) if x != "body")
        parts.append(f"{where or 'body'}: {p.get('msg', 'invalid')}")
    more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
    message = "the request does not match the API: " + "; ".join(parts) + more
    return _json_error(422, "validation", message, problems)


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    if exc.status_code == 404:
        return _json_error(
            404, "not_found", f"no such API route: {request.method} {request.url.path}"
        )
    if exc.status_code == 405:
        return _json_error(
            405,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}",
        )
    return _json_error(exc.status_code, "http_error", str(exc.detail))


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    return _fault(request, exc)


class AuditActor:
    """Every request acts as an `Actor` (its client's address; the user once its key is
    checked), so that the changes it makes are written to the audit log with who and where."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        with acting(Actor(user=None, address=client[0] if client else None)):
            await self.app(scope, receive, send)


def create_app(settings: ServerSettings, services: Services | None = None) -> FastAPI:
    """The application for a database and a store (opened now: migrations run here)."""
    opened = services or Services.open(settings)
    if not opened.accounts.has_users():
        log.warning(OPEN_WARNING)
    bind_unbound(opened.objects)  # versions logged in embedded mode, before this server
    bind_unbound_links(opened.objects)  # registry links made before registries held objects

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.threads
        hooks = start_webhook_worker(opened)
        keeper = start_retention(opened)
        try:
            yield
        finally:
            if keeper is not None:
                keeper.stop()
            if hooks is not None:
                hooks.stop()
            opened.close()

    app = FastAPI(
        title="Cairn",
        version=__version__,
        summary="Version the data and models ML work reads and writes, with lineage.",
        openapi_url=f"{API_PREFIX}/openapi.json",
        docs_url=f"{API_PREFIX}/docs",
        redoc_url=None,
        lifespan=lifespan,
    )
    app.state.services = opened
    app.add_exception_handler(CairnError, _cairn_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _internal_error)
    app.add_middleware(Gate, settings=settings, services=opened)
    app.add_middleware(AuditActor)

    @app.get(f"{API_PREFIX}/health", tags=["meta"], summary="Is the process up? (liveness)")
    def health() -> dict[str, Any]:
        """Answers 200 while the process runs, whatever its database and store do: restart
        the process when this fails. Whether it can serve requests is ``GET /ready``."""
        return {"status": "ok", "version": __version__, "api": "v1"}

    @app.get(
        f"{API_PREFIX}/ready",
        tags=["meta"],
        summary="Can it serve requests? (readiness: the database and the store)",
        responses={503: {"description": "the database or the store cannot be used"}},
    )
    def ready() -> JSONResponse:
        """200 when a query on the database and a lookup in the object store both work;
        else 503 naming which failed (the details go to the server's log)."""
        checks = readiness(opened)
        ok = all(v == "ok" for v in checks.values())
        body = {"status": "ready" if ok else "unavailable", "checks": checks}
        return JSONResponse(body, status_code=200 if ok else 503)

    @app.get(f"{API_PREFIX}/info", tags=["meta"], summary="What this server offers clients")
    def info(caller: Caller) -> dict[str, Any]:
        """``objects.direct``: objects move between clients and the bucket on signed URLs
        (``POST /objects/packs``, ``POST /objects/locate``) instead of through the server."""
        return {"version": __version__, "api": "v1", "objects": opened.objects.info()}

    app.include_router(routes_registry.router, prefix=API_PREFIX)
    app.include_router(routes_objects.router, prefix=API_PREFIX)
    app.include_router(routes_accounts.router, prefix=API_PREFIX)
    app.include_router(routes_registries.router, prefix=API_PREFIX)
    app.include_router(routes_webhooks.router, prefix=API_PREFIX)
    app.include_router(routes_retention.router, prefix=API_PREFIX)
    app.include_router(routes_parts.router, prefix=API_PREFIX)
    app.include_router(server_dashboard())  # the web dashboard, at /
    return app


def readiness(services: Services) -> dict[str, str]:
    """Each dependency's state: "ok", or what failed (logged in full, not shown)."""
    checks: dict[str, str] = {}
    try:
        with services.registry.engine.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as exc:
        log.error("readiness: the database cannot be used: %s", exc)
        checks["database"] = "unavailable"
    try:
        services.objects.store.missing(["blake3:" + "0" * 64])
        checks["store"] = "ok"
    except Exception as exc:
        log.error("readiness: the object store cannot be used: %s", exc)
        checks["store"] = "unavailable"
    return checks


def start_webhook_worker(services: Services) -> WebhookWorker | None:
    """The webhook delivery thread of this process (CAIRN_WEBHOOK_WORKER=0: none)."""
    from cairn import config

    if not config.webhook_worker():
        return None
    return WebhookWorker(services.registry.engine).start()


def start_retention(services: Services) -> RetentionScheduler | None:
    """This process's retention schedule (every CAIRN_RETENTION_INTERVAL seconds; 0: none).
    With several processes on PostgreSQL one evaluates at a time (an advisory lock)."""
    from cairn import config

    interval = config.retention_interval()
    if interval <= 0:
        return None
    return RetentionScheduler(
        services.registry.engine, interval, measure=routes_retention.measure(services)
    ).start()


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call (settings from CAIRN_SERVER_*)."""
    return create_app(ServerSettings.from_env())


__all__ = ["OPEN_WARNING", "app_from_env", "create_app"]
