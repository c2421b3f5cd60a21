"""A version's lineage graph (depth, direction, expandable groups)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Annotated
from urllib.parse import quote

from fastapi import Query
from fastapi.responses import Response

from cairn.dashboard import lineage
from cairn.dashboard.context import C, Pages, add_query
from cairn.dashboard.pages.versions import version_of, version_page
from cairn.errors import InvalidInputError

DEPTHS = [1, 2, 3, 4, 6, 10]

pages = Pages()


@pages.get("/p/{project}/a/{name}/v/{ref}/lineage")
def lineage_page(
    ctx: C,
    project: str,
    name: str,
    ref: str,
    depth: str = "3",
    direction: str = "both",
    expand: Annotated[list[str] | None, Query()] = None,
) -> Response:
    urls = ctx.urls
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
    # where each drawn version is linked (registries the viewer has a role in)
    linked = {
        n.id: shown
        for n in pic.nodes
        if n.kind == "version" and n.ref
        for shown in [
            [x for x in ctx.registry.links_of(int(n.ref)) if ctx.registry_role(x.registry)]
        ]
        if shown
    }

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
        linked=linked,
    )
