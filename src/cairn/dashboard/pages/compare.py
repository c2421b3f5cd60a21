"""Comparing a version with another of the same artifact (files and metadata)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Annotated

from fastapi import Query
from fastapi.responses import Response

from cairn.core.records import VersionInfo
from cairn.dashboard import compare
from cairn.dashboard.context import FILES_PAGE, C, Offset, Pages, make_pager, window
from cairn.dashboard.pages.versions import version_of, version_page
from cairn.errors import ArtifactNotFoundError

pages = Pages()


@pages.get("/p/{project}/a/{name}/v/{ref}/compare")
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
        diff = compare.file_diff(ctx.object_store, base.digest, info.digest, offset, limit)
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
