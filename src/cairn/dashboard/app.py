"""The dashboard's app and router: server-rendered pages over the same `Registry` and
`ObjectStore` the SDK and the API use.

`dashboard_router(registry, objects, access)` builds a FastAPI `APIRouter` from three callables
that take the request: the registry, the object store, and the `Access` that says who is looking
(None: open, everyone may read and write). `create_dashboard_app(backend)` wraps it in an app of
its own over an `EmbeddedBackend` (tests, and `python -m cairn.dashboard`).

The pages themselves live in `cairn.dashboard.pages` (one module per part of the site); what they
share (the request context, pagination, error pages) in `cairn.dashboard.context`.

Every list is paginated (``offset``/``limit``) and every page asks the registry or the store for
just what it shows: a version of a million files shows one page of one folder, and a project of
ten thousand versions one page of them.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from fastapi import APIRouter, FastAPI

from cairn._version import __version__
from cairn.dashboard import render
from cairn.dashboard.auth import Access
from cairn.dashboard.context import (
    AccessFn,
    Ctx,
    LoginRequired,
    ObjectsFn,
    Pager,
    RegistryFn,
    Site,
    route_class,
)
from cairn.dashboard.pages import all_pages


def dashboard_router(
    registry: RegistryFn,
    objects: ObjectsFn,
    access: AccessFn | None = None,
    *,
    prefix: str = "",
) -> APIRouter:
    """The dashboard's routes. ``registry``, ``objects`` and ``access`` are called with each
    request; ``access=None`` runs the dashboard open (no sign-in, everyone may edit)."""
    site = Site(registry=registry, objects=objects, access=access, urls=render.Urls(prefix))
    router = APIRouter(prefix=prefix, route_class=route_class(site), include_in_schema=False)
    for pages in all_pages():
        pages.add_to(router)
    return router


def create_dashboard_app(backend: Any, access: Access | None = None) -> FastAPI:
    """A FastAPI app serving only the dashboard over a backend with ``registry`` and
    ``object_store`` (an `EmbeddedBackend`): for tests and for running it on its own."""
    app = FastAPI(
        title="Cairn dashboard",
        version=__version__,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.include_router(
        dashboard_router(
            lambda request: backend.registry,
            lambda request: backend.object_store,
            (lambda request: access) if access is not None else None,
        )
    )
    app.state.started = datetime.now(UTC)
    return app


__all__ = ["Ctx", "LoginRequired", "Pager", "create_dashboard_app", "dashboard_router"]
