"""A version's TTL on its page: when it expires and why (its own TTL, its artifact's or its
project's default), and a form for writers to set it (``30d``, ``12h``, ``none`` for never,
``inherit`` for the default), as ``cairn artifact ttl`` does. Expired versions are deleted by
retention (`cairn retention apply`, or a server's schedule); see docs/lifecycle.md."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Annotated

from fastapi import Form
from fastapi.responses import Response

from cairn.core.records import VersionInfo
from cairn.dashboard.context import Ctx, P, Pages
from cairn.service.retention import TtlInfo, format_duration, parse_duration
from cairn.service.sql import SqlRegistry
from cairn.service.sql.retention import SqlRetention

pages = Pages()


def ttl_of(ctx: Ctx, info: VersionInfo) -> TtlInfo | None:
    """The version's TTL, or None when this dashboard's registry keeps none (not SQL)."""
    if not isinstance(ctx.registry, SqlRegistry):
        return None
    return SqlRetention(ctx.registry.engine).ttl(info.id)


def describe(ttl: TtlInfo) -> str:
    """ "never" or "30d (the project's default)": the TTL in force and where it comes from."""
    if not ttl.ttl:
        return "never" if ttl.source in ("version", "none") else f"never ({ttl.source} default)"
    origin = "its own" if ttl.source == "version" else f"the {ttl.source}'s default"
    return f"{format_duration(ttl.ttl)} ({origin})"


@pages.post("/p/{project}/a/{name}/v/{ref}/ttl")
def set_ttl(
    ctx: P, project: str, name: str, ref: str, ttl: Annotated[str, Form()] = ""
) -> Response:
    ctx.need(project, "write")
    info = ctx.registry.resolve(project, name, ref)
    text = ttl.strip().lower()
    seconds = None if text == "inherit" else parse_duration(text)
    if not isinstance(ctx.registry, SqlRegistry):  # pragma: no cover - every dashboard is SQL
        return ctx.redirect(ctx.urls.version(project, name, info.version), "No TTLs here.")
    user = None if ctx.viewer.open else ctx.viewer.name
    now = SqlRetention(ctx.registry.engine).set_ttl(info.id, seconds, user=user)
    back = ctx.urls.version(project, name, info.version) + "#details"
    return ctx.redirect(back, f"TTL: {describe(now)}.")


__all__ = ["describe", "pages", "ttl_of"]
