"""An artifact's versions, a version's overview (with its description, aliases and tags edited in
place), who used it, and its history. `version_of` and `version_page` are the frame every
version tab (files, lineage, compare) is drawn in."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

import re
from datetime import datetime
from typing import Annotated, Any

from fastapi import Form, Query
from fastapi.responses import HTMLResponse, Response

from cairn.core.records import ArtifactInfo, VersionInfo
from cairn.dashboard import columns, compare, filters
from cairn.dashboard.context import (
    PAGE,
    C,
    Ctx,
    Offset,
    P,
    Pages,
    Redirect,
    add_query,
    make_pager,
    window,
)
from cairn.errors import ArtifactNotFoundError, InvalidInputError, NotFoundError, StateError
from cairn.service.sql import SqlRegistry
from cairn.service.sql.registries import role_at_least

pages = Pages()


def version_of(ctx: Ctx, project: str, name: str, ref: str, tail: str = "") -> VersionInfo:
    """The version ``ref`` names; a page asked for by alias, 'latest' or digest is sent to its
    vN address (``tail`` is the tab's part of the path)."""
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
        added=lambda: ctx.site.added_index.version(
            ctx.registry, ctx.object_store, info
        ),  # see added.py
        cli_snippet=f"cairn artifact get {info.qualified_name}",
        **context,
    )


def _canonical(ctx: Ctx, info: VersionInfo, tail: str) -> str:
    url = ctx.urls.version(info.project, info.name, info.version) + tail
    query = ctx.request.url.query
    return url + ("?" + query if query else "")


@pages.get("/p/{project}/a/{name}")
def artifact_page(
    ctx: C,
    project: str,
    name: str,
    where: str = "",
    sort: str = "",
    at: str = "",
    offset: Offset = 0,
    limit: int | None = None,
    col: Annotated[list[str] | None, Query()] = None,
) -> Response:
    ctx.need(project)
    offset, limit = window(offset, limit, PAGE)
    art = _artifact_info(ctx, project, name)
    cols = columns.chosen(col)
    error = ""
    versions: list[VersionInfo] = []
    try:  # the filter box: the CLI's --where language and --sort
        wanted = filters.where_filters(where)
        order = filters.sort_order(sort)
        if wanted is not None or order is not None:
            versions = ctx.registry.search_versions(
                project=project,
                name=name,
                filters=wanted,
                order=order,
                limit=limit + 1,
                offset=offset,
            )
        else:
            versions = ctx.registry.list_versions(project, name, limit=limit + 1, offset=offset)
    except InvalidInputError as exc:
        error = str(exc)
    filtered = bool(where.strip() or sort.strip())
    shown = versions[:limit]
    total = None if filtered else art.version_count
    pager = make_pager(ctx.request, offset, limit, len(shown), len(versions) > limit, total)
    spans, held, at_time, at_error = _alias_timeline(ctx, project, name, at)
    ctx.prefetch_runs(v.run_id for v in shown)
    return ctx.page(
        "artifact.html",
        status=400 if error or at_error else 200,
        spans=spans,
        held=held,
        at=at,
        at_time=at_time,
        at_value=filters.at_value(at_time),
        at_error=at_error,
        project=project,
        art=art,
        versions=shown,
        pager=pager,
        run_of=ctx.run,
        added=lambda: ctx.site.added_index.artifact(ctx.registry, ctx.object_store, project, name),
        where=where,
        sort=sort,
        error=error,
        filtered=filtered,
        can_write=ctx.can_write(project),
        cols=cols,
        no_cols_url=_without(ctx, "col", "offset"),
        keys=lambda: _metadata_keys(ctx, project, name, shown),
        col_value=columns.value_at,
        missing=columns.is_missing,
        sort_field=columns.sort_field,
        sort_state=lambda field: columns.sort_state(sort or "-version", field),
        sort_url=lambda field, down=False: _sort_url(
            ctx, columns.next_sort(sort or "-version", field, down)
        ),
    )


@pages.post("/p/{project}/a/{name}/description")
def edit_artifact_description(
    ctx: P, project: str, name: str, description: Annotated[str, Form()] = ""
) -> Response:
    """The artifact's own description (Markdown), as the SDK's ``ArtifactCollection.save()``."""
    ctx.need(project, "write")
    _artifact_info(ctx, project, name)  # a 404 for an artifact that is not there
    text = description.replace("\r\n", "\n")
    ctx.registry.update_artifact(project, name, description=text, user=ctx.viewer.name)
    return ctx.redirect(ctx.urls.artifact(project, name), "Description saved.")


def _metadata_keys(ctx: Ctx, project: str, name: str, shown: list[VersionInfo]) -> list[str]:
    """The metadata keys the columns picker offers: those of the artifact's newest 200 versions
    and of the versions shown."""
    newest = ctx.registry.list_versions(project, name, limit=200)
    return columns.metadata_keys(v.metadata for v in [*newest, *shown])


def _without(ctx: Ctx, *keys: str) -> str:
    """This page's address without the query parameters ``keys``."""
    url = ctx.request.url.remove_query_params(keys)
    return url.path + ("?" + url.query if url.query else "")


def _sort_url(ctx: Ctx, sort: str) -> str:
    """This page sorted by ``sort`` (from its first page; the filter and columns kept)."""
    return add_query(ctx.request.url.remove_query_params(["sort", "offset"]), "sort", sort)


def _alias_timeline(
    ctx: Ctx, project: str, name: str, at: str
) -> tuple[
    dict[str, list[filters.Span]], list[tuple[str, VersionInfo | None]], datetime | None, str
]:
    """The artifact's alias timeline (replayed from its versions' append-only history) and,
    when ``at`` is given, what held each alias then (`Registry.resolve_at`)."""
    spans: dict[str, list[filters.Span]] = {}
    if isinstance(ctx.registry, SqlRegistry):
        spans = filters.timeline(
            filters.AliasChange(m.alias, m.version, m.at, m.user, m.run_id)
            for m in ctx.registry.alias_history(project, name)
        )
    try:
        when = filters.parse_at(at)
    except InvalidInputError as exc:
        return spans, [], None, str(exc)
    held: list[tuple[str, VersionInfo | None]] = []
    if when is not None:
        for alias in ["latest", *spans]:
            try:
                found: VersionInfo | None = ctx.registry.resolve_at(project, name, alias, when)
            except NotFoundError:
                found = None
            held.append((alias, found))
    return spans, held, when, ""


@pages.get("/p/{project}/a/{name}/v/{ref}")
def overview(ctx: C, project: str, name: str, ref: str) -> Response:
    info = version_of(ctx, project, name, ref)
    others: list[tuple[str, VersionInfo]] = []
    if ctx.can_write(project):
        for other in ctx.registry.list_versions(project, name, limit=100):
            if other.id != info.id:
                others += [(a, other) for a in other.aliases if a != "latest"]
    # where the version is linked: the collections of registries the viewer has a role in
    links = [x for x in ctx.registry.links_of(info.id) if ctx.registry_role(x.registry)]
    # where the viewer may link it: registries they are a member (or more) of
    targets = [
        r.name
        for r in ctx.registry.list_registries()
        if role_at_least(ctx.registry_role(r.name), "member")
    ]
    from cairn.dashboard.pages.retention import describe, ttl_of

    ttl = ttl_of(ctx, info)
    return version_page(
        ctx,
        info,
        "",
        "version_overview.html",
        other_aliases=others,
        linked_in=links,
        link_targets=targets,
        ttl=ttl,
        ttl_text=describe(ttl) if ttl is not None else None,
    )


@pages.post("/p/{project}/a/{name}/v/{ref}/link")
def link_version(
    ctx: P,
    project: str,
    name: str,
    ref: str,
    registry: Annotated[str, Form()],
    collection: Annotated[str, Form()],
    aliases: Annotated[str, Form()] = "",
) -> Response:
    """Link the version into a registry's collection (created on the first link), as
    ``cairn link``: reading the project and being a member of the registry are enough; a
    protected alias needs a maintainer."""
    ctx.need(project)
    registry, collection = registry.strip(), collection.strip()
    role = ctx.need_registry(registry, "member")
    info = ctx.registry.resolve(project, name, ref)
    back = ctx.urls.version(project, name, info.version)
    wanted = [a for a in re.split(r"[,\s]+", aliases) if a]
    try:
        link = ctx.registry.link_version(
            registry,
            collection,
            info.id,
            aliases=wanted,
            user=ctx.viewer.name,
            allow_protected=role_at_least(role, "maintainer"),
        )
    except (InvalidInputError, NotFoundError, StateError) as exc:
        return ctx.redirect(back, f"Could not link: {exc}")
    return ctx.redirect(back, f"Linked {info.label} as {link.qualified_name}.")


@pages.post("/p/{project}/a/{name}/v/{ref}/description")
def edit_description(
    ctx: P, project: str, name: str, ref: str, description: Annotated[str, Form()] = ""
) -> Response:
    ctx.need(project, "write")
    info = ctx.registry.resolve(project, name, ref)
    text = description.replace("\r\n", "\n")
    ctx.registry.update_version(info.id, description=text, user=ctx.viewer.name)
    return ctx.redirect(ctx.urls.version(project, name, info.version), "Description saved.")


@pages.post("/p/{project}/a/{name}/v/{ref}/aliases")
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
    back = ctx.urls.version(project, name, info.version)
    try:  # one atomic registry call each: a concurrent edit is never overwritten
        if action == "remove":
            ctx.registry.remove_alias(info.id, alias, user=ctx.viewer.name)
            return ctx.redirect(back, f"Alias {alias!r} removed from {info.label}.")
        if action != "add":
            raise InvalidInputError(f"unknown action {action!r}")
        if alias in current:
            return ctx.redirect(back, f"{info.label} already has alias {alias!r}.")
        _, moved_from = ctx.registry.add_alias(info.id, alias, user=ctx.viewer.name)
    except (InvalidInputError, NotFoundError) as exc:
        return ctx.redirect(back, f"Could not set alias: {exc}")
    if moved_from is not None:
        return ctx.redirect(back, f"Alias {alias!r} moved from v{moved_from} to {info.label}.")
    return ctx.redirect(back, f"Alias {alias!r} added to {info.label}.")


@pages.post("/p/{project}/a/{name}/v/{ref}/tags")
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
    back = ctx.urls.version(project, name, info.version)
    try:  # one atomic registry call each: a concurrent edit is never overwritten
        if action == "remove":
            ctx.registry.remove_tag(info.id, tag, user=ctx.viewer.name)
        elif action == "add":
            ctx.registry.add_tag(info.id, tag, user=ctx.viewer.name)
        else:
            raise InvalidInputError(f"unknown action {action!r}")
    except (InvalidInputError, NotFoundError) as exc:
        return ctx.redirect(back, f"Could not change tags: {exc}")
    done = "removed from" if action == "remove" else "added to"
    return ctx.redirect(back, f"Tag {tag!r} {done} {info.label}.")


@pages.get("/p/{project}/a/{name}/v/{ref}/usage")
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


@pages.get("/p/{project}/a/{name}/v/{ref}/history")
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
    ctx.prefetch_runs(e.run_id for e in shown)
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
