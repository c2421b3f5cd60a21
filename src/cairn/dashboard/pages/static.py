"""The dashboard's static files (stylesheet, scripts, icons) and the favicon."""

from fastapi import Request
from fastapi.responses import RedirectResponse, Response
from starlette.responses import FileResponse

from cairn.dashboard import render
from cairn.dashboard.context import Pages, site_of
from cairn.errors import ArtifactNotFoundError

pages = Pages()


@pages.get("/static/{name}")
def static(name: str) -> Response:
    path = render.STATIC / name
    if "/" in name or name.startswith(".") or not path.is_file():
        raise ArtifactNotFoundError(f"no static file {name!r}")
    return FileResponse(path, headers={"Cache-Control": "public, max-age=86400"})


@pages.get("/favicon.ico")
def favicon(request: Request) -> Response:
    return RedirectResponse(site_of(request).urls.static("cairn.svg"), status_code=301)
