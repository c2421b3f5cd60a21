"""The FastAPI application: routes under ``/api/v1``, one JSON error shape, body size limits.

``create_app(settings)`` builds it for a database and a store (a folder or a bucket);
``app_from_env`` is the factory uvicorn's worker processes call (`cairn server --workers N`),
reading CAIRN_SERVER_*.
The application keeps nothing in memory another process would need: any number of processes
(and machines sharing the store folder or bucket) may serve one PostgreSQL database.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from cairn._version import __version__
from cairn.dashboard.server import server_dashboard
from cairn.errors import CairnError, PayloadTooLargeError
from cairn.server import routes_accounts, routes_objects, routes_registries, routes_registry
from cairn.server.backfill import bind_unbound
from cairn.server.deps import Caller, ServerSettings, Services
from cairn.service.audit import Actor, acting
from cairn.wire import API_PREFIX, error_body, error_detail, status_for

log = logging.getLogger("cairn.server")

OPEN_WARNING = (
    "WARNING: this server has no users, so it runs OPEN: anyone who can reach it may read and "
    "write everything. Create the first administrator with `cairn server create-admin NAME`."
)


def _json_error(status: int, code: str, message: str, detail: Any = None) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return JSONResponse(error_body(code, message, detail), status_code=status, headers=headers)


async def _cairn_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, CairnError)
    status = status_for(exc)
    if status >= 500:
        log.error("%s %s failed: %s", request.method, request.url.path, exc)
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
    log.exception("%s %s failed", request.method, request.url.path, exc_info=exc)
    return _json_error(
        500, "internal", f"internal server error ({type(exc).__name__}); see the server's log"
    )


class BodyLimit:
    """Refuse request bodies larger than the route accepts (413, with the JSON error shape):
    by their Content-Length before reading anything, and by counting a chunked body."""

    def __init__(self, app: ASGIApp, settings: ServerSettings) -> None:
        self.app = app
        self.settings = settings

    def _limit(self, method: str, path: str) -> int:
        objects = f"{API_PREFIX}/objects"
        if method == "POST" and path == objects:
            return self.settings.max_batch_bytes
        if method == "PUT" and path.startswith(objects + "/"):
            return self.settings.max_object_bytes
        return self.settings.max_json_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self._limit(scope["method"], scope["path"])
        declared = next((v for k, v in scope["headers"] if k == b"content-length"), None)
        if declared is not None:
            if not declared.isdigit():
                await _json_error(400, "invalid_input", "invalid Content-Length header")(
                    scope, receive, send
                )
                return
            if int(declared) > limit:
                exc = PayloadTooLargeError(
                    f"the request body is {int(declared)} bytes; this route accepts at most "
                    f"{limit} bytes"
                )
                await _json_error(413, exc.code, str(exc), {"limit": limit})(scope, receive, send)
                return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLargeError(
                        f"the request body is larger than {limit} bytes, the most this route "
                        "accepts"
                    )
            return message

        await self.app(scope, counted, send)


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

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        try:
            yield
        finally:
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
    app.add_middleware(BodyLimit, settings=settings)
    app.add_middleware(AuditActor)

    @app.get(f"{API_PREFIX}/health", tags=["meta"], summary="Is the server up?")
    def health() -> dict[str, Any]:
        return {"status": "ok", "version": __version__, "api": "v1"}

    @app.get(f"{API_PREFIX}/info", tags=["meta"], summary="What this server offers clients")
    def info(caller: Caller) -> dict[str, Any]:
        """``objects.direct``: objects move between clients and the bucket on signed URLs
        (``POST /objects/packs``, ``POST /objects/locate``) instead of through the server."""
        return {"version": __version__, "api": "v1", "objects": opened.objects.info()}

    app.include_router(routes_registry.router, prefix=API_PREFIX)
    app.include_router(routes_objects.router, prefix=API_PREFIX)
    app.include_router(routes_accounts.router, prefix=API_PREFIX)
    app.include_router(routes_registries.router, prefix=API_PREFIX)
    app.include_router(server_dashboard())  # the web dashboard, at /
    return app


def app_from_env() -> FastAPI:
    """The factory uvicorn workers call (settings from CAIRN_SERVER_*)."""
    return create_app(ServerSettings.from_env())


__all__ = ["OPEN_WARNING", "app_from_env", "create_app"]
