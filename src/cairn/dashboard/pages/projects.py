"""The list of projects, a project's artifacts, and its storage report."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Any

from fastapi.responses import Response

from cairn.core.records import ArtifactInfo
from cairn.dashboard.context import PAGE, C, Offset, Pages, make_pager, project_info, window

pages = Pages()


@pages.get("/")
def projects(ctx: C, offset: Offset = 0, limit: int | None = None) -> Response:
    offset, limit = window(offset, limit, PAGE)
    visible = [p for p in ctx.registry.list_projects() if ctx.viewer.can(p.name, "read")]
    shown = visible[offset : offset + limit]
    pager = make_pager(
        ctx.request, offset, limit, len(shown), offset + len(shown) < len(visible), len(visible)
    )
    return ctx.page("projects.html", projects=shown, pager=pager)


@pages.get("/p/{project}")
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
    info = project_info(ctx, project)
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


@pages.get("/p/{project}/storage")
def storage_page(ctx: C, project: str, offset: Offset = 0, limit: int | None = None) -> Response:
    ctx.need(project)
    offset, limit = window(offset, limit, PAGE)
    info = project_info(ctx, project)
    report = ctx.site.storage_index.report(ctx.registry, ctx.object_store)
    # store-wide figures only for those who may see every project: for anyone else they would
    # tell whether other projects hold the same bytes
    store_wide = ctx.viewer.is_admin

    def only(a: Any) -> int:
        return int(a.exclusive if store_wide else a.exclusive_in_project)

    rows = sorted(report.project(project), key=lambda a: (-only(a), -a.held, a.name))
    shown = rows[offset : offset + limit]
    pager = make_pager(
        ctx.request, offset, limit, len(shown), offset + len(shown) < len(rows), len(rows)
    )
    totals = {
        "held": sum(a.held for a in rows),
        "distinct": report.project_totals.get(project, 0),
        "exclusive": sum(only(a) for a in rows),
        "logical": sum(a.logical for a in rows),
        "versions": sum(a.versions for a in rows),
    }
    return ctx.page(
        "storage.html",
        project=info,
        report=report,
        rows=[(a, only(a)) for a in shown],
        totals=totals,
        store_wide=store_wide,
        pager=pager,
        section="storage",
    )
