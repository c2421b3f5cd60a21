"""What every dashboard page shares: the `Site` one `dashboard_router()` builds (templates, URLs,
the registry/store/access callables), the per-request `Ctx` handlers receive, pagination
(`Pager`, `window`), error pages, and `Pages`, the collector each page module declares its routes
on.

Page handlers are module-level functions in `cairn.dashboard.pages`. The router's route class
(`route_class(site)`) puts the site in the request's scope before the handler and its
dependencies run, so `get_ctx` can build the `Ctx` without closures.
"""

# No `from __future__ import annotations` here: FastAPI reads the dependencies' parameter types.

import hashlib
import logging
from collections.abc import Callable, Coroutine, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar
from urllib.parse import quote, unquote, urlsplit

import jinja2
from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import URL

from cairn._version import __version__
from cairn.core.records import ProjectInfo, RunInfo
from cairn.dashboard import render
from cairn.dashboard.added import AddedIndex
from cairn.dashboard.auth import COOKIE, Access, OpenAccess, Viewer
from cairn.dashboard.charts import ChartCache
from cairn.dashboard.storage import StorageIndex
from cairn.errors import (
    CairnError,
    InvalidInputError,
    NotFoundError,
    PermissionDeniedError,
    ProjectNotFoundError,
    RegistryNotFoundError,
    RunNotFoundError,
    StateError,
)
from cairn.objects.store import ObjectStore
from cairn.service.registry import Registry
from cairn.service.sql.registries import role_at_least

log = logging.getLogger("cairn.dashboard")

PAGE = 50
FILES_PAGE = 100
MAX_LIMIT = 500
FLASH = "cairn_flash"
TABS = [
    ("", "Overview"),
    ("files", "Files"),
    ("usage", "Usage"),
    ("history", "History"),
    ("lineage", "Lineage"),
    ("compare", "Compare"),
]

RegistryFn = Callable[[Request], Registry]
ObjectsFn = Callable[[Request], ObjectStore]
AccessFn = Callable[[Request], Access]

_SITE = "cairn.dashboard.site"  # the request scope key route_class() sets


class LoginRequired(Exception):
    pass


class Forbidden(Exception):
    pass


class Redirect(Exception):
    """Raised by a page that lives at another address (a version named by alias, 'latest' or
    digest is sent to its vN address)."""

    def __init__(self, url: str) -> None:
        self.url = url


# --- pagination ---------------------------------------------------------------------------------


@dataclass
class Pager:
    offset: int
    limit: int
    shown: int
    has_more: bool
    prev_url: str | None
    next_url: str | None
    total: int | None = None

    @property
    def first(self) -> int:
        return self.offset + 1 if self.shown else self.offset

    @property
    def last(self) -> int:
        return self.offset + self.shown


def _page_url(url: URL, offset: int) -> str:
    url = url.remove_query_params("offset")
    if offset > 0:
        url = url.include_query_params(offset=offset)
    return url.path + ("?" + url.query if url.query else "")


def make_pager(
    at: Request | URL, offset: int, limit: int, shown: int, has_more: bool, total: int | None = None
) -> Pager:
    """Links to the previous and next pages of the list shown at ``at`` (a request or URL)."""
    url = at.url if isinstance(at, Request) else at
    prev_url = _page_url(url, max(offset - limit, 0)) if offset > 0 else None
    next_url = _page_url(url, offset + limit) if has_more else None
    return Pager(offset, limit, shown, has_more, prev_url, next_url, total)


def add_query(url: URL, key: str, value: str) -> str:
    """``url`` with one more ``key=value`` (keeping repeated keys, which starlette's
    include_query_params would replace)."""
    query = (url.query + "&" if url.query else "") + f"{key}={quote(value)}"
    return url.path + "?" + query


def window(offset: int, limit: int | None, default: int) -> tuple[int, int]:
    if offset < 0:
        raise InvalidInputError(f"offset must be at least 0, not {offset}")
    if limit is None:
        limit = default
    if limit < 1:
        raise InvalidInputError(f"limit must be at least 1, not {limit}")
    return offset, min(limit, MAX_LIMIT)


# --- the site and the request context -----------------------------------------------------------


@dataclass
class Site:
    """One mounted dashboard: how to reach the registry, store and accounts for a request, and
    what renders its pages."""

    registry: RegistryFn
    objects: ObjectsFn
    access: AccessFn | None
    urls: render.Urls
    env: jinja2.Environment = field(default_factory=render.environment)
    storage_index: StorageIndex = field(default_factory=StorageIndex)
    added_index: AddedIndex = field(default_factory=AddedIndex)
    charts: ChartCache = field(default_factory=ChartCache)
    open_access: OpenAccess = field(default_factory=OpenAccess)
    static_version: str = field(default_factory=lambda: static_version())

    def access_of(self, request: Request) -> Access:
        return self.access(request) if self.access is not None else self.open_access

    def page(
        self,
        request: Request,
        template: str,
        viewer: Viewer | None = None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash = request.cookies.get(FLASH)
        body = self.env.get_template(template).render(
            request=request,
            urls=self.urls,
            viewer=viewer,
            flash=unquote(flash) if flash else None,
            static_version=self.static_version,
            cairn_version=__version__,
            tabs=TABS,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        if flash:
            response.delete_cookie(FLASH, path=self.urls.prefix or "/")
        return response

    def error_page(self, request: Request, exc: Exception) -> Response:
        status = _status(exc)
        viewer = getattr(request.state, "viewer", None)
        message = (
            str(exc)
            if status < 500
            else f"internal error ({type(exc).__name__}); the server's log has the details"
        )
        return self.page(
            request, "error.html", viewer, status=status, status_code=status, message=message
        )

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        """A 303 to ``url``, with a message shown once on the next page."""
        response = RedirectResponse(url, status_code=303)
        if flash:
            response.set_cookie(
                FLASH,
                quote(flash[:300]),
                path=self.urls.prefix or "/",
                httponly=True,
                samesite="lax",
            )
        return response


@dataclass
class Ctx:
    """What a page handler has: the request, the registry and store, who is looking."""

    request: Request
    registry: Registry
    object_store: ObjectStore
    viewer: Viewer
    access: Access
    urls: render.Urls
    page: Callable[..., HTMLResponse]
    site: Site
    cache: dict[str, Any] = field(default_factory=dict)

    def need(self, project: str, role: str = "read") -> None:
        """Raise unless the viewer has ``role`` in ``project`` (a project they cannot read is
        reported as not found, as the API does)."""
        if self.viewer.can(project, role):
            return
        if not self.viewer.can(project, "read"):
            raise ProjectNotFoundError(
                f"project {project!r} does not exist or you have no access to it"
            )
        raise PermissionDeniedError(
            f"you have {self.viewer.role(project)} access to project {project!r}; this needs "
            f"{role} access (ask one of the project's admins)"
        )

    def can_write(self, project: str) -> bool:
        return self.viewer.can(project, "write")

    def registry_role(self, registry: str) -> str | None:
        """The viewer's role in a registry (viewer, member, maintainer, admin; None: none, or
        no such registry). Server administrators (and everyone on an open dashboard) are
        admins of every registry."""
        key = "registry-role:" + registry
        if key not in self.cache:
            role: str | None = None
            if self.viewer.is_admin:
                self.registry.get_registry(registry)  # exists?
                role = "admin"
            elif self.viewer.name is not None:
                try:
                    role = self.registry.registry_members(registry).get(self.viewer.name)
                except RegistryNotFoundError:
                    role = None
            self.cache[key] = role
        found: str | None = self.cache[key]
        return found

    def need_registry(self, registry: str, need: str = "viewer") -> str:
        """The viewer's role in the registry, at least ``need``: a registry they have no role in
        is reported as not found (as the API does)."""
        role = self.registry_role(registry)
        if role is None:
            raise RegistryNotFoundError(
                f"registry {registry!r} does not exist or you have no access to it"
            )
        if not role_at_least(role, need):
            raise PermissionDeniedError(
                f"you are a {role} of registry {registry!r}; this needs {need} (ask one of the "
                "registry's admins)"
            )
        return role

    def run(self, run_id: str | None) -> RunInfo | None:
        """A run by id (cached for the request), or None."""
        if not run_id:
            return None
        key = "run:" + run_id
        if key not in self.cache:
            try:
                self.cache[key] = self.registry.get_run(run_id)
            except RunNotFoundError:
                self.cache[key] = None
        found: RunInfo | None = self.cache[key]
        return found

    def prefetch_runs(self, run_ids: Iterable[str | None]) -> None:
        """Look the runs a page names up in one query, for `run` to find in the cache."""
        wanted = [i for i in dict.fromkeys(run_ids) if i and "run:" + i not in self.cache]
        if not wanted:
            return
        found = self.registry.get_runs(wanted)
        for run_id in wanted:
            self.cache["run:" + run_id] = found.get(run_id)

    def load(self, digest: str) -> bytes:
        return self.object_store.get(digest)

    def redirect(self, url: str, flash: str | None = None) -> RedirectResponse:
        return self.site.redirect(url, flash)


def site_of(request: Request) -> Site:
    """The dashboard serving this request (set by the route class of its router)."""
    site: Site = request.scope[_SITE]
    return site


def get_viewer(request: Request) -> Viewer:
    viewer = site_of(request).access_of(request).viewer(request.cookies.get(COOKIE))
    if viewer is None:
        raise LoginRequired
    request.state.viewer = viewer
    return viewer


def get_ctx(request: Request, viewer: Annotated[Viewer, Depends(get_viewer)]) -> Ctx:
    site = site_of(request)
    return Ctx(
        request=request,
        registry=site.registry(request),
        object_store=site.objects(request),
        viewer=viewer,
        access=site.access_of(request),
        urls=site.urls,
        page=lambda template, **kw: site.page(request, template, viewer, **kw),
        site=site,
    )


def post_ctx(ctx: Annotated[Ctx, Depends(get_ctx)]) -> Ctx:
    if not same_origin(ctx.request):
        raise Forbidden(
            "this form was not sent from a page of this dashboard (Origin or Referer "
            "missing or different); reload the page and try again"
        )
    return ctx


C = Annotated[Ctx, Depends(get_ctx)]
"""A page's context (the viewer must be signed in where the server has accounts)."""
P = Annotated[Ctx, Depends(post_ctx)]
"""A form post's context (also checks that the form came from this site)."""
Offset = Annotated[int, Query(ge=0, le=2**63 - 1)]  # beyond 64 bits: 422, not a crash


class DashboardRoute(APIRoute):
    """Pages answer errors with an HTML page (not the API's JSON), and send a browser that
    is not signed in to the sign-in page."""

    site: ClassVar[Site]

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        site = self.site

        async def run(request: Request) -> Response:
            request.scope[_SITE] = site
            try:
                return await handler(request)
            except Redirect as r:
                return RedirectResponse(r.url, status_code=307)
            except LoginRequired:
                here = request.url.path + ("?" + request.url.query if request.url.query else "")
                return RedirectResponse(site.urls.login(here), status_code=303)
            except RequestValidationError as exc:  # a path or query value of the wrong kind
                return site.error_page(request, _Unreadable(exc))
            except (CairnError, Forbidden) as exc:
                if _status(exc) >= 500:
                    log.error("%s %s failed: %s", request.method, request.url.path, exc)
                return site.error_page(request, exc)
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.url.path)
                return site.error_page(request, exc)

        return run


def route_class(site: Site) -> type[APIRoute]:
    """The route class of a router serving ``site``."""
    return type("DashboardRoute", (DashboardRoute,), {"site": site})


class Pages:
    """The routes of one page module, declared at module level with ``@pages.get(path)`` /
    ``@pages.post(path)`` and added to each dashboard router by `add_to` (in declaration
    order)."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, Callable[..., Any], str]] = []

    def get(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._declare(path, "GET")

    def post(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return self._declare(path, "POST")

    def _declare(
        self, path: str, method: str
    ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def declare(handler: Callable[..., Any]) -> Callable[..., Any]:
            self._routes.append((path, handler, method))
            return handler

        return declare

    def add_to(self, router: APIRouter) -> None:
        for path, handler, method in self._routes:
            router.add_api_route(path, handler, methods=[method])


# --- helpers ------------------------------------------------------------------------------------


class _Unreadable(Exception):
    """A path or query value FastAPI could not read (a word for a number, an integer beyond 64
    bits): answered 422 with what was wrong, not a 500."""

    def __init__(self, exc: RequestValidationError) -> None:
        parts = []
        for error in exc.errors()[:3]:
            where = ".".join(str(x) for x in error.get("loc", ())[1:]) or "the request"
            parts.append(f"{where}: {error.get('msg', 'not valid')}")
        super().__init__("; ".join(parts) or "the request cannot be read")


def _status(exc: Exception) -> int:
    if isinstance(exc, _Unreadable):
        return 422
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, PermissionDeniedError | Forbidden):
        return 403
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, StateError):
        return 409
    return 500


def safe_next(target: str | None, home: str) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return home
    return target


def same_origin(request: Request) -> bool:
    """A form post must come from a page of this site (Origin, else Referer, names it): a page
    elsewhere cannot make a signed-in browser change anything."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    host = request.headers.get("host", "")
    return urlsplit(source).netloc == host


def project_info(ctx: Ctx, project: str) -> ProjectInfo:
    for p in ctx.registry.list_projects():
        if p.name == project:
            return p
    raise ProjectNotFoundError(f"project {project!r} does not exist or you have no access to it")


def static_version() -> str:
    h = hashlib.sha256()
    for path in sorted(render.STATIC.iterdir()):
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:10]
