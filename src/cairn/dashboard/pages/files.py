"""A version's files: folder listings (paged, with seek-by-name), a file's preview, and the raw
bytes (inline only for types that are safe to show)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

import posixpath
from urllib.parse import quote

from fastapi.responses import Response
from starlette.responses import StreamingResponse

from cairn.core.records import VersionInfo
from cairn.dashboard import browse, render
from cairn.dashboard.context import FILES_PAGE, C, Ctx, Offset, Pages, make_pager, window
from cairn.dashboard.pages.versions import version_of, version_page
from cairn.errors import ArtifactNotFoundError
from cairn.objects import tree

pages = Pages()


@pages.get("/p/{project}/a/{name}/v/{ref}/files")
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


@pages.get("/p/{project}/a/{name}/v/{ref}/files/{path:path}")
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
    if isinstance(entry, tree.Dir):
        return folder_view(ctx, info, path, entry.digest, offset, limit, start)
    preview = browse.make_preview(ctx.object_store, path, entry, render.markdown)
    return version_page(
        ctx,
        info,
        "files",
        "version_file.html",
        path=path,
        entry=entry,
        stored=isinstance(entry, tree.File),
        chunked=isinstance(entry, tree.File) and bool(entry.chunks),
        crumbs=_crumbs(path),
        preview=preview,
        raw_url=ctx.urls.raw(project, name, info.version, path),
        download_url=ctx.urls.raw(project, name, info.version, path, True),
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
    urls = ctx.urls
    offset, limit = window(offset, limit, FILES_PAGE)
    if start:
        offset = browse.seek(digest, start, ctx.load)
    listing = browse.dir_page(digest, ctx.load, offset, limit)
    # the pager continues from the position found, not from the name
    here = ctx.request.url.remove_query_params("start")
    pager = make_pager(here, offset, limit, len(listing.entries), listing.has_more, listing.total)
    rows = []
    for e in listing.entries:
        child = f"{path}/{e.name}" if path else e.name
        rows.append(
            {
                "name": e.name,
                "path": child,
                "dir": isinstance(e, tree.Dir),
                "ref": isinstance(e, tree.Ref),
                "size": e.size,
                "count": e.count if isinstance(e, tree.Dir) else None,
                "digest": e.digest,
                "chunked": isinstance(e, tree.File) and bool(e.chunks),
                "url": urls.files(info.project, info.name, info.version, child),
                "download": urls.raw(info.project, info.name, info.version, child, True),
                "inline": urls.raw(info.project, info.name, info.version, child),
                "image": isinstance(e, tree.File) and browse.kind_of(e.name) == "image",
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


@pages.get("/p/{project}/a/{name}/v/{ref}/raw/{path:path}")
def raw(ctx: C, project: str, name: str, ref: str, path: str, download: bool = False) -> Response:
    info = version_of(ctx, project, name, ref, "/raw/" + quote(path, safe="/"))
    entry = tree.lookup(info.digest, path, ctx.load)
    if not isinstance(entry, tree.File):
        raise ArtifactNotFoundError(f"{info.qualified_name} has no file {path!r}")
    kind = browse.content_type(path)
    inline = not download and kind.split(";")[0] in browse.SAFE_INLINE
    filename = posixpath.basename(path)
    disposition = "inline" if inline else "attachment"
    headers = {
        "Content-Length": str(entry.size),
        "Content-Disposition": f"{disposition}; filename*=UTF-8''{quote(filename)}",
        "ETag": '"' + entry.digest + '"',
        "Cache-Control": "private, max-age=3600",
        "X-Content-Type-Options": "nosniff",
        "Content-Security-Policy": "sandbox; default-src 'none'; img-src 'self' data:; "
        "style-src 'unsafe-inline'",
    }
    if ctx.request.headers.get("if-none-match") == headers["ETag"]:
        return Response(status_code=304, headers={"ETag": headers["ETag"]})
    media = kind if inline else "application/octet-stream"
    return StreamingResponse(
        browse.iter_content(ctx.object_store, entry), media_type=media, headers=headers
    )


def _crumbs(path: str) -> list[tuple[str, str]]:
    """(name, path so far) for each folder of ``path``."""
    parts = path.split("/") if path else []
    return [(p, "/".join(parts[: i + 1])) for i, p in enumerate(parts)]
