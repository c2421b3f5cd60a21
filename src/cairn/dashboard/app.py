"""The dashboard's routes: server-rendered pages over the same `Registry` and `ObjectStore` the
SDK and the API use.

`dashboard_router(registry, objects, access)` builds a FastAPI `APIRouter` from three callables
that take the request: the registry, the object store, and the `Access` that says who is looking
(None: open, everyone may read and write). `create_dashboard_app(backend)` wraps it in an app of
its own over an `EmbeddedBackend` (tests, and `python -m cairn.dashboard`).

Every list is paginated (``offset``/``limit``) and every page asks the registry or the store for
just what it shows: a version of a million files shows one page of one folder, and a project of
ten thousand versions one page of them.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types,
# some of which are aliases local to dashboard_router.

import hashlib
import logging
import posixpath
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Annotated, Any
from urllib.parse import quote, unquote, urlsplit

from fastapi import APIRouter, Depends, FastAPI, Form, Query, Request
from fastapi.responses import HTMLResponse, PlainTextResponse, RedirectResponse, Response
from fastapi.routing import APIRoute
from starlette.datastructures import URL
from starlette.responses import FileResponse, StreamingResponse

from cairn._version import __version__
from cairn.core.records import ArtifactInfo, RunInfo, VersionInfo
from cairn.dashboard import browse, compare, lineage, render
from cairn.dashboard.auth import COOKIE, Access, OpenAccess, Viewer
from cairn.dashboard.storage import StorageIndex
from cairn.errors import (
    ArtifactNotFoundError,
    CairnError,
    InvalidInputError,
    NotFoundError,
    ObjectNotFoundError,
    PermissionDeniedError,
    ProjectNotFoundError,
    RunNotFoundError,
    StateError,
)
from cairn.objects import tree
from cairn.objects.odb import ObjectStore
from cairn.service.registry import Registry

log = logging.getLogger("cairn.dashboard")

PAGE = 50
FILES_PAGE = 100
MAX_LIMIT = 500
FLASH = "cairn_flash"
DIFF_LIMIT = 256 << 10
TABS = [
    ("", "Overview"),
    ("files", "Files"),
    ("usage", "Usage"),
    ("history", "History"),
    ("lineage", "Lineage"),
    ("compare", "Compare"),
]
DEPTHS = [1, 2, 3, 4, 6, 10]

RegistryFn = Callable[[Request], Registry]
ObjectsFn = Callable[[Request], ObjectStore]
AccessFn = Callable[[Request], Access]


class LoginRequired(Exception):
    pass


class Forbidden(Exception):
    pass


class Redirect(Exception):
    """Raised by a page that lives at another address (a version named by alias, 'latest' or
    digest is sent to its vN address)."""

    def __init__(self, url: str) -> None:
        self.url = url


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


@dataclass
class Ctx:
    """What a page handler has: the request, the registry and store, who is looking."""

    request: Request
    registry: Registry
    odb: ObjectStore
    viewer: Viewer
    access: Access
    urls: render.Urls
    page: Callable[..., HTMLResponse]
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

    def load(self, digest: str) -> bytes:
        return self.odb.get(digest)


def _status(exc: Exception) -> int:
    if isinstance(exc, NotFoundError):
        return 404
    if isinstance(exc, PermissionDeniedError | Forbidden):
        return 403
    if isinstance(exc, InvalidInputError):
        return 400
    if isinstance(exc, StateError):
        return 409
    return 500


def _safe_next(target: str | None, home: str) -> str:
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return home
    return target


def _same_origin(request: Request) -> bool:
    """A form post must come from a page of this site (Origin, else Referer, names it): a page
    elsewhere cannot make a signed-in browser change anything."""
    source = request.headers.get("origin") or request.headers.get("referer")
    if not source or source == "null":
        return False
    host = request.headers.get("host", "")
    return urlsplit(source).netloc == host


def dashboard_router(
    registry: RegistryFn,
    objects: ObjectsFn,
    access: AccessFn | None = None,
    *,
    prefix: str = "",
) -> APIRouter:
    """The dashboard's routes. ``registry``, ``objects`` and ``access`` are called with each
    request; ``access=None`` runs the dashboard open (no sign-in, everyone may edit)."""
    env = render.environment()
    urls = render.Urls(prefix)
    storage_index = StorageIndex()
    open_access = OpenAccess()
    static_version = _static_version()

    def page(
        request: Request,
        template: str,
        viewer: Viewer | None = None,
        status: int = 200,
        **context: Any,
    ) -> HTMLResponse:
        flash = request.cookies.get(FLASH)
        body = env.get_template(template).render(
            request=request,
            urls=urls,
            viewer=viewer,
            flash=unquote(flash) if flash else None,
            static_version=static_version,
            cairn_version=__version__,
            tabs=TABS,
            **context,
        )
        response = HTMLResponse(body, status_code=status)
        if flash:
            response.delete_cookie(FLASH, path=urls.prefix or "/")
        return response

    def error_page(request: Request, exc: Exception) -> Response:
        status = _status(exc)
        viewer = getattr(request.state, "viewer", None)
        message = str(exc) if status < 500 else f"internal error ({type(exc).__name__}): {exc}"
        return page(
            request, "error.html", viewer, status=status, status_code=status, message=message
        )

    class DashboardRoute(APIRoute):
        """Pages answer errors with an HTML page (not the API's JSON), and send a browser that
        is not signed in to the sign-in page."""

        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            handler = super().get_route_handler()

            async def run(request: Request) -> Response:
                try:
                    return await handler(request)
                except Redirect as r:
                    return RedirectResponse(r.url, status_code=307)
                except LoginRequired:
                    here = request.url.path + ("?" + request.url.query if request.url.query else "")
                    return RedirectResponse(urls.login(here), status_code=303)
                except (CairnError, Forbidden) as exc:
                    return error_page(request, exc)
                except Exception as exc:
                    log.exception("%s %s failed", request.method, request.url.path)
                    return error_page(request, exc)

            return run

    router = APIRouter(prefix=prefix, route_class=DashboardRoute, include_in_schema=False)

    def access_of(request: Request) -> Access:
        return access(request) if access is not None else open_access

    def get_viewer(request: Request) -> Viewer:
        viewer = access_of(request).viewer(request.cookies.get(COOKIE))
        if viewer is None:
            raise LoginRequired
        request.state.viewer = viewer
        return viewer

    def get_ctx(request: Request, viewer: Annotated[Viewer, Depends(get_viewer)]) -> Ctx:
        return Ctx(
            request=request,
            registry=registry(request),
            odb=objects(request),
            viewer=viewer,
            access=access_of(request),
            urls=urls,
            page=lambda template, **kw: page(request, template, viewer, **kw),
        )

    def post_ctx(ctx: Annotated[Ctx, Depends(get_ctx)]) -> Ctx:
        if not _same_origin(ctx.request):
            raise Forbidden(
                "this form was not sent from a page of this dashboard (Origin or Referer "
                "missing or different); reload the page and try again"
            )
        return ctx

    C = Annotated[Ctx, Depends(get_ctx)]
    P = Annotated[Ctx, Depends(post_ctx)]
    Offset = Annotated[int, Query(ge=0)]

    def redirect(url: str, flash: str | None = None) -> RedirectResponse:
        response = RedirectResponse(url, status_code=303)
        if flash:
            response.set_cookie(
                FLASH, quote(flash[:300]), path=urls.prefix or "/", httponly=True, samesite="lax"
            )
        return response

    # --- static files and signing in -------------------------------------------------------

    @router.get("/static/{name}")
    def static(name: str) -> Response:
        path = render.STATIC / name
        if "/" in name or name.startswith(".") or not path.is_file():
            raise ArtifactNotFoundError(f"no static file {name!r}")
        return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})

    @router.get("/favicon.ico")
    def favicon() -> Response:
        return RedirectResponse(urls.static("cairn.svg"), status_code=301)

    @router.get("/login")
    def login_form(request: Request, next: str | None = None) -> Response:
        if not access_of(request).has_accounts():
            return RedirectResponse(_safe_next(next, urls.home()), status_code=303)
        return page(request, "login.html", None, next=_safe_next(next, urls.home()), error=None)

    @router.post("/login")
    def login(
        request: Request, key: Annotated[str, Form()] = "", next: Annotated[str, Form()] = ""
    ) -> Response:
        target = _safe_next(next, urls.home())
        if not _same_origin(request):
            raise Forbidden("sign in from the dashboard's sign-in page")
        viewer = access_of(request).viewer(key.strip()) if key.strip() else None
        if viewer is None:
            return page(
                request,
                "login.html",
                None,
                status=401,
                next=target,
                error="That API key is not valid (mistyped, or revoked).",
            )
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(
            COOKIE,
            key.strip(),
            max_age=30 * 86400,
            path=urls.prefix or "/",
            httponly=True,
            samesite="lax",
            secure=request.url.scheme == "https",
        )
        return response

    @router.post("/logout")
    def logout(request: Request) -> Response:
        if not _same_origin(request):
            raise Forbidden("sign out from a page of the dashboard")
        response = RedirectResponse(urls.login(), status_code=303)
        response.delete_cookie(COOKIE, path=urls.prefix or "/")
        return response

    # --- projects ----------------------------------------------------------------------------

    @router.get("/")
    def projects(ctx: C, offset: Offset = 0, limit: int | None = None) -> Response:
        offset, limit = window(offset, limit, PAGE)
        visible = [p for p in ctx.registry.list_projects() if ctx.viewer.can(p.name, "read")]
        shown = visible[offset : offset + limit]
        pager = make_pager(
            ctx.request, offset, limit, len(shown), offset + len(shown) < len(visible), len(visible)
        )
        return ctx.page("projects.html", projects=shown, pager=pager)

    @router.get("/p/{project}")
    def project_page(
        ctx: C,
        project: str,
        q: str = "",
        type: str = "",
        offset: Offset = 0,
        limit: int | None = None,
    ) -> Response:
        ctx.need(project)
        offset, limit = window(offset, limit, PAGE)
        info = _project_info(ctx, project)
        arts = ctx.registry.list_artifacts(
            project, type=type or None, search=q or None, limit=limit + 1, offset=offset
        )
        shown = arts[:limit]
        groups: dict[str, list[ArtifactInfo]] = {}
        for a in sorted(shown, key=lambda a: (a.type, a.name)):
            groups.setdefault(a.type, []).append(a)
        total = info.artifact_count if not q and not type else None
        pager = make_pager(ctx.request, offset, limit, len(shown), len(arts) > limit, total)
        return ctx.page(
            "project.html",
            project=info,
            groups=groups,
            q=q,
            type=type,
            pager=pager,
            section="artifacts",
        )

    @router.get("/p/{project}/runs")
    def runs_page(
        ctx: C,
        project: str,
        job_type: str = "",
        state: str = "",
        offset: Offset = 0,
        limit: int | None = None,
    ) -> Response:
        ctx.need(project)
        offset, limit = window(offset, limit, PAGE)
        info = _project_info(ctx, project)
        if state and state not in ("running", "finished", "failed", "crashed"):
            raise InvalidInputError(f"unknown run state {state!r}")
        found = ctx.registry.list_runs(
            project,
            job_type=job_type or None,
            state=state or None,  # type: ignore[arg-type]  # checked above
            limit=limit + 1,
            offset=offset,
        )
        shown = found[:limit]
        total = info.run_count if not job_type and not state else None
        pager = make_pager(ctx.request, offset, limit, len(shown), len(found) > limit, total)
        return ctx.page(
            "runs.html",
            project=info,
            runs=shown,
            job_type=job_type,
            state=state,
            pager=pager,
            section="runs",
        )

    @router.get("/p/{project}/storage")
    def storage_page(
        ctx: C, project: str, offset: Offset = 0, limit: int | None = None
    ) -> Response:
        ctx.need(project)
        offset, limit = window(offset, limit, PAGE)
        info = _project_info(ctx, project)
        report = storage_index.report(ctx.registry, ctx.odb)
        rows = sorted(report.project(project), key=lambda a: (-a.exclusive, -a.held, a.name))
        shown = rows[offset : offset + limit]
        pager = make_pager(
            ctx.request, offset, limit, len(shown), offset + len(shown) < len(rows), len(rows)
        )
        totals = {
            "held": sum(a.held for a in rows),
            "exclusive": sum(a.exclusive for a in rows),
            "logical": sum(a.logical for a in rows),
            "versions": sum(a.versions for a in rows),
        }
        return ctx.page(
            "storage.html",
            project=info,
            report=report,
            rows=shown,
            totals=totals,
            pager=pager,
            section="storage",
        )

    # --- artifacts and versions ---------------------------------------------------------------

    @router.get("/p/{project}/a/{name}")
    def artifact_page(
        ctx: C, project: str, name: str, offset: Offset = 0, limit: int | None = None
    ) -> Response:
        ctx.need(project)
        offset, limit = window(offset, limit, PAGE)
        art = _artifact_info(ctx, project, name)
        versions = ctx.registry.list_versions(project, name, limit=limit + 1, offset=offset)
        shown = versions[:limit]
        pager = make_pager(
            ctx.request, offset, limit, len(shown), len(versions) > limit, art.version_count
        )
        return ctx.page(
            "artifact.html", project=project, art=art, versions=shown, pager=pager, run_of=ctx.run
        )

    def version_of(ctx: Ctx, project: str, name: str, ref: str, tail: str = "") -> VersionInfo:
        ctx.need(project)
        info = ctx.registry.resolve(project, name, ref)
        if ref != info.label:
            raise Redirect(_canonical(ctx, info, tail))
        return info

    def version_page(
        ctx: Ctx, info: VersionInfo, tab: str, template: str, **context: Any
    ) -> HTMLResponse:
        return ctx.page(
            template,
            project=info.project,
            v=info,
            tab=tab,
            can_write=ctx.can_write(info.project),
            logged_by=ctx.run(info.run_id),
            py_snippet=f'run.use_artifact("{info.qualified_name}")',
            cli_snippet=f"cairn artifact get {info.qualified_name}",
            **context,
        )

    def _canonical(ctx: Ctx, info: VersionInfo, tail: str) -> str:
        url = urls.version(info.project, info.name, info.version) + tail
        query = ctx.request.url.query
        return url + ("?" + query if query else "")

    @router.get("/p/{project}/a/{name}/v/{ref}")
    def overview(ctx: C, project: str, name: str, ref: str) -> Response:
        info = version_of(ctx, project, name, ref)
        others: list[tuple[str, VersionInfo]] = []
        if ctx.can_write(project):
            for other in ctx.registry.list_versions(project, name, limit=100):
                if other.id != info.id:
                    others += [(a, other) for a in other.aliases if a != "latest"]
        return version_page(ctx, info, "", "version_overview.html", other_aliases=others)

    @router.post("/p/{project}/a/{name}/v/{ref}/description")
    def edit_description(
        ctx: P, project: str, name: str, ref: str, description: Annotated[str, Form()] = ""
    ) -> Response:
        ctx.need(project, "write")
        info = ctx.registry.resolve(project, name, ref)
        text = description.replace("\r\n", "\n")
        ctx.registry.update_version(info.id, description=text, user=ctx.viewer.name)
        return redirect(urls.version(project, name, info.version), "Description saved.")

    @router.post("/p/{project}/a/{name}/v/{ref}/aliases")
    def edit_aliases(
        ctx: P,
        project: str,
        name: str,
        ref: str,
        alias: Annotated[str, Form()],
        action: Annotated[str, Form()] = "add",
    ) -> Response:
        ctx.need(project, "write")
        info = ctx.registry.resolve(project, name, ref)
        alias = alias.strip()
        current = [a for a in info.aliases if a != "latest"]
        back = urls.version(project, name, info.version)
        try:
            if action == "remove":
                ctx.registry.update_version(
                    info.id, aliases=[a for a in current if a != alias], user=ctx.viewer.name
                )
                return redirect(back, f"Alias {alias!r} removed from {info.label}.")
            if action != "add":
                raise InvalidInputError(f"unknown action {action!r}")
            if alias in current:
                return redirect(back, f"{info.label} already has alias {alias!r}.")
            moved_from = _alias_holder(ctx, project, name, alias)
            ctx.registry.update_version(info.id, aliases=[*current, alias], user=ctx.viewer.name)
        except InvalidInputError as exc:
            return redirect(back, f"Could not set alias: {exc}")
        if moved_from is not None:
            return redirect(back, f"Alias {alias!r} moved from v{moved_from} to {info.label}.")
        return redirect(back, f"Alias {alias!r} added to {info.label}.")

    @router.post("/p/{project}/a/{name}/v/{ref}/tags")
    def edit_tags(
        ctx: P,
        project: str,
        name: str,
        ref: str,
        tag: Annotated[str, Form()],
        action: Annotated[str, Form()] = "add",
    ) -> Response:
        ctx.need(project, "write")
        info = ctx.registry.resolve(project, name, ref)
        tag = tag.strip()
        back = urls.version(project, name, info.version)
        wanted = [t for t in info.tags if t != tag] if action == "remove" else [*info.tags, tag]
        try:
            ctx.registry.update_version(
                info.id, tags=list(dict.fromkeys(wanted)), user=ctx.viewer.name
            )
        except InvalidInputError as exc:
            return redirect(back, f"Could not change tags: {exc}")
        done = "removed from" if action == "remove" else "added to"
        return redirect(back, f"Tag {tag!r} {done} {info.label}.")

    # --- files ------------------------------------------------------------------------------

    @router.get("/p/{project}/a/{name}/v/{ref}/files")
    def files_root(
        ctx: C,
        project: str,
        name: str,
        ref: str,
        offset: Offset = 0,
        limit: int | None = None,
        start: str = "",
    ) -> Response:
        info = version_of(ctx, project, name, ref, "/files")
        return folder_view(ctx, info, "", info.digest, offset, limit, start)

    @router.get("/p/{project}/a/{name}/v/{ref}/files/{path:path}")
    def files_path(
        ctx: C,
        project: str,
        name: str,
        ref: str,
        path: str,
        offset: Offset = 0,
        limit: int | None = None,
        start: str = "",
    ) -> Response:
        path = path.strip("/")
        info = version_of(ctx, project, name, ref, "/files/" + quote(path, safe="/"))
        if not path:
            return folder_view(ctx, info, "", info.digest, offset, limit, start)
        entry = tree.lookup(info.digest, path, ctx.load)
        if entry is None:
            raise ArtifactNotFoundError(f"{info.qualified_name} has no file or folder {path!r}")
        if entry["t"] == "d":
            return folder_view(ctx, info, path, entry["d"], offset, limit, start)
        preview = browse.make_preview(ctx.odb, path, entry, render.markdown)
        return version_page(
            ctx,
            info,
            "files",
            "version_file.html",
            path=path,
            entry=entry,
            crumbs=_crumbs(path),
            preview=preview,
            raw_url=urls.raw(project, name, info.version, path),
            download_url=urls.raw(project, name, info.version, path, True),
        )

    def folder_view(
        ctx: Ctx,
        info: VersionInfo,
        path: str,
        digest: str,
        offset: int,
        limit: int | None,
        start: str,
    ) -> Response:
        offset, limit = window(offset, limit, FILES_PAGE)
        if start:
            offset = browse.seek(digest, start, ctx.load)
        listing = browse.dir_page(digest, ctx.load, offset, limit)
        # the pager continues from the position found, not from the name
        here = ctx.request.url.remove_query_params("start")
        pager = make_pager(
            here, offset, limit, len(listing.entries), listing.has_more, listing.total
        )
        rows = []
        for e in listing.entries:
            child = f"{path}/{e['n']}" if path else e["n"]
            rows.append(
                {
                    "name": e["n"],
                    "path": child,
                    "dir": e["t"] == "d",
                    "ref": e["t"] == "r",
                    "size": e.get("s"),
                    "count": e.get("k"),
                    "digest": e.get("d"),
                    "chunked": bool(e.get("c")),
                    "url": urls.files(info.project, info.name, info.version, child),
                    "download": urls.raw(info.project, info.name, info.version, child, True),
                }
            )
        return version_page(
            ctx,
            info,
            "files",
            "version_files.html",
            path=path,
            rows=rows,
            crumbs=_crumbs(path),
            pager=pager,
            start=start,
        )

    @router.get("/p/{project}/a/{name}/v/{ref}/raw/{path:path}")
    def raw(
        ctx: C, project: str, name: str, ref: str, path: str, download: bool = False
    ) -> Response:
        info = version_of(ctx, project, name, ref, "/raw/" + quote(path, safe="/"))
        entry = tree.lookup(info.digest, path, ctx.load)
        if entry is None or entry["t"] != "f":
            raise ArtifactNotFoundError(f"{info.qualified_name} has no file {path!r}")
        kind = browse.content_type(path)
        inline = not download and kind.split(";")[0] in browse.SAFE_INLINE
        filename = posixpath.basename(path)
        disposition = "inline" if inline else "attachment"
        headers = {
            "Content-Length": str(entry["s"]),
            "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(filename)}",
            "ETag": '"' + entry["d"] + '"',
            "Cache-Control": "private, max-age=3600",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; "
            "style-src 'unsafe-inline'",
        }
        if ctx.request.headers.get("if-none-match") == headers["ETag"]:
            return Response(status_code=304, headers={"ETag": headers["ETag"]})
        media = kind if inline else "application/octet-stream"
        return StreamingResponse(
            browse.iter_content(ctx.odb, entry), media_type=media, headers=headers
        )

    # --- usage, history, lineage, compare -------------------------------------------------------

    @router.get("/p/{project}/a/{name}/v/{ref}/usage")
    def usage(
        ctx: C, project: str, name: str, ref: str, offset: Offset = 0, limit: int | None = None
    ) -> Response:
        info = version_of(ctx, project, name, ref, "/usage")
        offset, limit = window(offset, limit, PAGE)
        users = ctx.registry.used_by(info.id)
        shown = users[offset : offset + limit]
        pager = make_pager(
            ctx.request, offset, limit, len(shown), offset + len(shown) < len(users), len(users)
        )
        return version_page(
            ctx,
            info,
            "usage",
            "version_usage.html",
            used_by=shown,
            pager=pager,
            readable=lambda p: ctx.viewer.can(p, "read"),
        )

    @router.get("/p/{project}/a/{name}/v/{ref}/history")
    def history(
        ctx: C, project: str, name: str, ref: str, offset: Offset = 0, limit: int | None = None
    ) -> Response:
        info = version_of(ctx, project, name, ref, "/history")
        offset, limit = window(offset, limit, PAGE)
        entries = list(reversed(ctx.registry.history(info.id)))
        shown = entries[offset : offset + limit]
        pager = make_pager(
            ctx.request, offset, limit, len(shown), offset + len(shown) < len(entries), len(entries)
        )
        return version_page(
            ctx,
            info,
            "history",
            "version_history.html",
            entries=shown,
            pager=pager,
            run_of=ctx.run,
            meta_diff=compare.metadata_diff,
        )

    @router.get("/p/{project}/a/{name}/v/{ref}/lineage")
    def lineage_page(
        ctx: C,
        project: str,
        name: str,
        ref: str,
        depth: str = "3",
        direction: str = "both",
        expand: Annotated[list[str] | None, Query()] = None,
    ) -> Response:
        info = version_of(ctx, project, name, ref, "/lineage")
        if direction not in ("both", "up", "down"):
            raise InvalidInputError(f"direction is 'both', 'up' or 'down', not {direction!r}")
        if depth != "all" and not (depth.isdigit() and 1 <= int(depth) <= 100):
            raise InvalidInputError(f"depth is a number from 1 to 100 or 'all', not {depth!r}")
        graph = ctx.registry.lineage(
            info.id,
            direction=direction,  # type: ignore[arg-type]  # checked above
            depth=None if depth == "all" else int(depth),
        )
        expanded = set(expand or [])
        here = ctx.request.url

        def href(node: lineage.GNode) -> str:
            if node.kind == "group":
                return add_query(here, "expand", node.id)
            if node.kind == "run":
                return urls.run(node.project, node.ref)
            if node.kind == "version":
                art, _, label = node.label.rpartition(":")
                return urls.version(
                    node.project,
                    art,
                    label,
                    "lineage",
                    depth=depth,
                    direction=direction if direction != "both" else None,
                )
            return ""

        pic = lineage.picture(
            graph, expand=expanded, can_read=lambda p: ctx.viewer.can(p, "read"), href=href
        )

        def collapse_url(gid: str) -> str:
            rest = [e for e in expanded if e != gid]
            url = here.remove_query_params("expand")
            base = url.path + ("?" + url.query if url.query else "")
            sep = "&" if "?" in base else "?"
            return base + (sep + "&".join("expand=" + quote(e) for e in rest) if rest else "")

        return version_page(
            ctx,
            info,
            "lineage",
            "version_lineage.html",
            pic=pic,
            depth=depth,
            direction=direction,
            depths=DEPTHS,
            collapse_url=collapse_url,
            node_w=lineage.NODE_W,
            fan_out=lineage.FAN_OUT,
            node_h=lineage.NODE_H,
        )

    @router.get("/p/{project}/a/{name}/v/{ref}/compare")
    def compare_page(
        ctx: C,
        project: str,
        name: str,
        ref: str,
        other: Annotated[str, Query(alias="with")] = "",
        offset: Offset = 0,
        limit: int | None = None,
    ) -> Response:
        info = version_of(ctx, project, name, ref, "/compare")
        offset, limit = window(offset, limit, FILES_PAGE)
        choices = ctx.registry.list_versions(project, name, limit=50)
        base: VersionInfo | None = None
        if other:
            base = ctx.registry.resolve(project, name, other.strip())
        else:
            for n in range(info.version - 1, max(info.version - 6, -1), -1):
                try:
                    base = ctx.registry.resolve(project, name, f"v{n}")
                    break
                except ArtifactNotFoundError:
                    continue
        diff = meta = pager = None
        if base is not None:
            diff = compare.file_diff(ctx.odb, base.digest, info.digest, offset, limit)
            meta = compare.metadata_diff(base.metadata, info.metadata)
            pager = make_pager(ctx.request, offset, limit, len(diff.changes), diff.has_more)
        return version_page(
            ctx,
            info,
            "compare",
            "version_compare.html",
            base=base,
            choices=choices,
            diff=diff,
            meta=meta,
            pager=pager,
            other=other,
        )

    # --- runs -------------------------------------------------------------------------------------

    @router.get("/p/{project}/r/{run_id}")
    def run_page(ctx: C, project: str, run_id: str) -> Response:
        ctx.need(project)
        run = ctx.registry.get_run(run_id)
        if run.project != project:
            raise RunNotFoundError(f"project {project!r} has no run {run_id!r}")
        inputs = ctx.registry.run_inputs(run.id)
        outputs = ctx.registry.run_outputs(run.id)
        diff_text, diff_truncated, diff_error = "", False, ""
        if run.git_diff_digest:
            try:
                data = ctx.odb.get(run.git_diff_digest)
                diff_truncated = len(data) > DIFF_LIMIT
                diff_text = data[:DIFF_LIMIT].decode("utf-8", errors="replace")
            except ObjectNotFoundError:
                diff_error = "the diff is not in the object store"
        return ctx.page(
            "run.html",
            project=project,
            run=run,
            inputs=inputs,
            outputs=outputs,
            diff_text=diff_text,
            diff_truncated=diff_truncated,
            diff_error=diff_error,
            readable=lambda p: ctx.viewer.can(p, "read"),
        )

    @router.get("/p/{project}/r/{run_id}/diff")
    def run_diff(ctx: C, project: str, run_id: str) -> Response:
        ctx.need(project)
        run = ctx.registry.get_run(run_id)
        if run.project != project or not run.git_diff_digest:
            raise RunNotFoundError(f"run {run_id!r} of {project!r} has no recorded diff")
        return PlainTextResponse(
            ctx.odb.get(run.git_diff_digest).decode("utf-8", errors="replace"),
            headers={"X-Content-Type-Options": "nosniff"},
        )

    return router


def _crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path so far) for each folder of ``path``."""
    parts = path.split("/") if path else []
    return [(p, "/".join(parts[: i + 1])) for i, p in enumerate(parts)]


def _project_info(ctx: Ctx, project: str) -> Any:
    for p in ctx.registry.list_projects():
        if p.name == project:
            return p
    raise ProjectNotFoundError(f"project {project!r} does not exist or you have no access to it")


def _artifact_info(ctx: Ctx, project: str, name: str) -> ArtifactInfo:
    """The artifact's record: found through the name search (the registry has no lookup by
    name), a page at a time."""
    offset = 0
    while True:
        page = ctx.registry.list_artifacts(project, search=name, limit=500, offset=offset)
        for a in page:
            if a.name == name:
                return a
        if len(page) < 500:
            break
        offset += 500
    raise ArtifactNotFoundError(f"project {project!r} has no artifact {name!r}")


def _alias_holder(ctx: Ctx, project: str, name: str, alias: str) -> int | None:
    try:
        return ctx.registry.resolve(project, name, alias).version
    except ArtifactNotFoundError:
        return None


def _static_version() -> str:
    h = hashlib.sha256()
    for path in sorted(render.STATIC.iterdir()):
        if path.is_file():
            h.update(path.read_bytes())
    return h.hexdigest()[:10]


def create_dashboard_app(backend: Any, access: Access | None = None) -> FastAPI:
    """A FastAPI app serving only the dashboard over a backend with ``registry`` and ``odb``
    (an `EmbeddedBackend`): for tests and for running it on its own."""
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
            lambda request: backend.odb,
            (lambda request: access) if access is not None else None,
        )
    )
    app.state.started = datetime.now(UTC)
    return app


__all__ = ["Ctx", "LoginRequired", "Pager", "create_dashboard_app", "dashboard_router"]
