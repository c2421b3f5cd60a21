"""Registries: the list of registries the viewer has a role in, a registry's collections, and a
collection's linked versions (each a link to the real version), with a filter box in the CLI's
``--where`` language, and the timeline of its aliases with an "as of" time.

A registry the viewer has no role in does not exist for them (404), as in the API; server
administrators (and everyone on an open dashboard) are admins of every registry.
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

import re
from datetime import datetime
from typing import Annotated

from fastapi import Form
from fastapi.responses import Response

from cairn.core.records import LinkInfo
from cairn.dashboard import filters
from cairn.dashboard.context import PAGE, C, Ctx, Offset, P, Pages, make_pager, window
from cairn.errors import InvalidInputError, NotFoundError
from cairn.service.sql.registries import REGISTRY_ROLES, check_role, role_at_least

pages = Pages()


@pages.get("/registries")
def registries_page(ctx: C, offset: Offset = 0, limit: int | None = None) -> Response:
    offset, limit = window(offset, limit, PAGE)
    visible = [
        (r, role)
        for r in ctx.registry.list_registries()
        if (role := ctx.registry_role(r.name)) is not None
    ]
    shown = visible[offset : offset + limit]
    pager = make_pager(
        ctx.request, offset, limit, len(shown), offset + len(shown) < len(visible), len(visible)
    )
    return ctx.page("registries.html", registries=shown, pager=pager, section="registries")


@pages.get("/registries/{registry}")
def registry_page(ctx: C, registry: str, offset: Offset = 0, limit: int | None = None) -> Response:
    role = ctx.need_registry(registry)
    offset, limit = window(offset, limit, PAGE)
    info = ctx.registry.get_registry(registry)
    found = ctx.registry.list_collections(registry, limit=limit + 1, offset=offset)
    shown = found[:limit]
    pager = make_pager(
        ctx.request, offset, limit, len(shown), len(found) > limit, info.collection_count
    )
    return ctx.page(
        "registry.html",
        reg=info,
        role=role,
        collections=shown,
        pager=pager,
        members=ctx.registry.registry_members(registry),
        roles=REGISTRY_ROLES,
        section="registries",
    )


@pages.post("/registries/{registry}/members")
def set_member(
    ctx: P,
    registry: str,
    member: Annotated[str, Form()],
    role: Annotated[str, Form()] = "none",
) -> Response:
    """A registry's admins give a user a role in it, change it, or take it away ('none')."""
    ctx.need_registry(registry, "admin")
    member = member.strip()
    back = ctx.urls.registry(registry) + "#members"
    try:
        if role != "none":
            check_role(role)
        ctx.registry.set_registry_member(
            registry, member, None if role == "none" else role, user=ctx.viewer.name
        )
    except InvalidInputError as exc:
        return ctx.redirect(back, f"Could not change the role: {exc}")
    if role == "none":
        return ctx.redirect(back, f"{member} has no role in {registry} any more.")
    return ctx.redirect(back, f"{member} is a {role} of {registry}.")


@pages.post("/registries/{registry}/settings")
def edit_registry(
    ctx: P,
    registry: str,
    description: Annotated[str, Form()] = "",
    protected_aliases: Annotated[str, Form()] = "",
) -> Response:
    """A registry's admins edit its description and its protected aliases."""
    ctx.need_registry(registry, "admin")
    back = ctx.urls.registry(registry)
    protected = [a for a in re.split(r"[,\s]+", protected_aliases) if a]
    try:
        ctx.registry.update_registry(
            registry,
            description=description.replace("\r\n", "\n"),
            protected_aliases=protected,
            user=ctx.viewer.name,
        )
    except InvalidInputError as exc:
        return ctx.redirect(back, f"Could not save: {exc}")
    return ctx.redirect(back, "Registry saved.")


@pages.get("/registries/{registry}/c/{collection}")
def collection_page(
    ctx: C,
    registry: str,
    collection: str,
    where: str = "",
    sort: str = "",
    at: str = "",
    offset: Offset = 0,
    limit: int | None = None,
) -> Response:
    role = ctx.need_registry(registry)
    offset, limit = window(offset, limit, PAGE)
    reg = ctx.registry.get_registry(registry)
    coll = ctx.registry.get_collection(registry, collection)
    error = ""
    links: list[LinkInfo] = []
    try:
        wanted = filters.where_filters(where)
        order = filters.sort_order(sort)
        if wanted is not None or order is not None:
            links = ctx.registry.search_links(
                registry,
                collection=collection,
                filters=wanted,
                order=order,
                limit=limit + 1,
                offset=offset,
            )
        else:
            links = ctx.registry.list_links(registry, collection, limit=limit + 1, offset=offset)
    except InvalidInputError as exc:
        error = str(exc)
    filtered = bool(where.strip() or sort.strip())
    shown = links[:limit]
    ctx.prefetch_runs(x.run_id for x in shown)
    total = coll.version_count if not filtered else None
    pager = make_pager(ctx.request, offset, limit, len(shown), len(links) > limit, total)
    spans, held, at_time, at_error = _timeline(ctx, registry, collection, at)
    targets = _targets(ctx, registry, collection, spans)
    return ctx.page(
        "collection.html",
        status=400 if error or at_error else 200,
        reg=reg,
        coll=coll,
        role=role,
        links=shown,
        pager=pager,
        where=where,
        sort=sort,
        error=error,
        filtered=filtered,
        spans=spans,
        held=held,
        targets=targets,
        at=at,
        at_time=at_time,
        at_value=filters.at_value(at_time),
        at_error=at_error,
        readable=lambda p: ctx.viewer.can(p, "read"),
        run_of=ctx.run,
        can_edit=role_at_least(role, "member"),
        can_protected=role_at_least(role, "maintainer"),
        section="registries",
    )


@pages.post("/registries/{registry}/c/{collection}/v/{ref}/aliases")
def edit_link_aliases(
    ctx: P,
    registry: str,
    collection: str,
    ref: str,
    alias: Annotated[str, Form()],
    action: Annotated[str, Form()] = "add",
) -> Response:
    """Members set and remove a collection version's aliases (moving one from another version);
    the registry's protected aliases need a maintainer: anyone else gets a 403, nothing
    changes."""
    role = ctx.need_registry(registry, "member")
    alias = alias.strip()
    link = ctx.registry.resolve_link(registry, collection, ref)
    back = ctx.urls.collection(registry, collection) + f"#link-v{link.version}"
    if action not in ("add", "remove"):
        raise InvalidInputError(f"unknown action {action!r}")
    try:
        ctx.registry.set_link_aliases(
            registry,
            collection,
            link.label,
            add=[alias] if action == "add" else [],
            remove=[alias] if action == "remove" else [],
            user=ctx.viewer.name,
            allow_protected=role_at_least(role, "maintainer"),
        )
    except (InvalidInputError, NotFoundError) as exc:
        return ctx.redirect(back, f"Could not change aliases: {exc}")
    done = "removed from" if action == "remove" else "set on"
    return ctx.redirect(back, f"Alias {alias!r} {done} {registry}/{collection}:{link.label}.")


@pages.post("/registries/{registry}/c/{collection}/v/{ref}/unlink")
def unlink(ctx: P, registry: str, collection: str, ref: str) -> Response:
    """Members unlink a collection version (recorded; the version itself stays); one holding a
    protected alias needs a maintainer."""
    role = ctx.need_registry(registry, "member")
    link = ctx.registry.unlink_version(
        registry,
        collection,
        ref,
        user=ctx.viewer.name,
        allow_protected=role_at_least(role, "maintainer"),
    )
    return ctx.redirect(
        ctx.urls.collection(registry, collection),
        f"Unlinked {link.qualified_name} ({link.target.qualified_name} itself is untouched).",
    )


def _timeline(
    ctx: Ctx, registry: str, collection: str, at: str
) -> tuple[dict[str, list[filters.Span]], list[tuple[str, LinkInfo | None]], datetime | None, str]:
    """The collection's alias timeline (from its append-only history) and, when ``at`` is
    given, what held each alias then (asked of the registry, as `cairn artifact show --at`)."""
    changes = [
        filters.AliasChange(h.alias, h.version, h.at, h.user, h.run_id)
        for h in ctx.registry.collection_history(registry, collection)
        if h.field == "alias" and h.alias is not None
    ]
    spans = filters.timeline(changes)
    try:
        when = filters.parse_at(at)
    except InvalidInputError as exc:
        return spans, [], None, str(exc)
    held: list[tuple[str, LinkInfo | None]] = []
    if when is not None:
        for alias in ["latest", *spans]:
            try:
                found = ctx.registry.resolve_link(registry, collection, alias, at=when)
            except NotFoundError:
                found = None
            held.append((alias, found))
    return spans, held, when, ""


def _targets(
    ctx: Ctx, registry: str, collection: str, spans: dict[str, list[filters.Span]]
) -> dict[int, LinkInfo]:
    """The link behind each collection version number of the timeline: the linked ones in one
    search, an unlinked one as it was while it held the alias."""
    first: dict[int, datetime] = {}
    for span in (s for held in spans.values() for s in held):
        first[span.version] = min(span.start, first.get(span.version, span.start))
    numbers = sorted(first)[-200:]
    if not numbers:
        return {}
    found = {
        x.version: x
        for x in ctx.registry.search_links(
            registry,
            collection=collection,
            filters={"version": {"$in": numbers}},
            limit=len(numbers),
        )
    }
    for number in numbers:
        if number not in found:
            try:
                found[number] = ctx.registry.resolve_link(
                    registry, collection, f"v{number}", at=first[number]
                )
            except NotFoundError:
                continue
    return found
