"""The audit log, for server administrators: every change made on the server (who, when, from
where, what, before/after), filtered by user, project, registry, action and time, a page at a
time, and exported as JSON lines (the same lines as ``cairn audit export``)."""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

import json
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from fastapi.responses import Response, StreamingResponse

from cairn.dashboard import filters
from cairn.dashboard.context import PAGE, C, Ctx, Offset, Pages, make_pager, window
from cairn.errors import InvalidInputError, PermissionDeniedError

EXPORT_PAGE = 1000
ACTIONS = (
    "collection.",
    "collection.alias",
    "collection.description",
    "collection.link",
    "collection.tags",
    "collection.unlink",
    "key.",
    "key.create",
    "key.revoke",
    "project.role",
    "registry.",
    "registry.create",
    "registry.role",
    "registry.update",
    "session.",
    "session.sign_in",
    "session.sign_in_failed",
    "user.create",
    "version.",
    "version.aliases",
    "version.created",
    "version.deleted",
    "version.description",
    "version.metadata",
    "version.name",
    "version.tags",
    "version.type",
)

pages = Pages()


def _need_admin(ctx: Ctx) -> None:
    if not ctx.viewer.is_admin:
        raise PermissionDeniedError(
            "only server administrators may read the audit log (ask one of them)"
        )


def _query(
    user: str, project: str, registry: str, action: str, since: str, until: str
) -> dict[str, Any]:
    """The registry's audit_log arguments from the form (empty fields are no filter)."""
    return {
        "user": user.strip() or None,
        "project": project.strip() or None,
        "registry": registry.strip() or None,
        "action": action.strip() or None,
        "since": filters.parse_at(since),
        "until": filters.parse_at(until),
    }


@pages.get("/audit")
def audit_page(
    ctx: C,
    user: str = "",
    project: str = "",
    registry: str = "",
    action: str = "",
    since: str = "",
    until: str = "",
    offset: Offset = 0,
    limit: int | None = None,
) -> Response:
    _need_admin(ctx)
    offset, limit = window(offset, limit, PAGE)
    form = {
        "user": user,
        "project": project,
        "registry": registry,
        "action": action,
        "since": since,
        "until": until,
    }
    error = ""
    entries: list[Any] = []
    since_at: datetime | None = None
    until_at: datetime | None = None
    try:
        query = _query(**form)
        since_at, until_at = query["since"], query["until"]
        entries = ctx.registry.audit_log(**query, limit=limit + 1, offset=offset)
    except InvalidInputError as exc:
        error = str(exc)
    shown = entries[:limit]
    pager = make_pager(ctx.request, offset, limit, len(shown), len(entries) > limit)
    filtered = any(v.strip() for v in form.values())
    return ctx.page(
        "audit.html",
        status=400 if error else 200,
        entries=shown,
        pager=pager,
        form=form,
        since_value=filters.at_value(since_at) if since_at else since,
        until_value=filters.at_value(until_at) if until_at else until,
        filtered=filtered,
        error=error,
        actions=ACTIONS,
        export_url=ctx.urls.audit_export(**form),
        section="audit",
    )


@pages.get("/audit/export")
def audit_export(
    ctx: C,
    user: str = "",
    project: str = "",
    registry: str = "",
    action: str = "",
    since: str = "",
    until: str = "",
) -> Response:
    """Every matching entry, oldest first, one JSON object per line (as ``cairn audit
    export``), streamed a thousand entries at a time."""
    _need_admin(ctx)
    query = _query(user, project, registry, action, since, until)
    registry_ = ctx.registry
    registry_.audit_log(**query, limit=1)  # a bad filter fails here, as a page, not mid-stream

    def lines() -> Iterator[bytes]:
        offset = 0
        while True:
            page = registry_.audit_log(**query, limit=EXPORT_PAGE, offset=offset)
            yield b"".join(
                json.dumps(entry.to_dict(), sort_keys=True).encode() + b"\n" for entry in page
            )
            if len(page) < EXPORT_PAGE:
                return
            offset += len(page)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return StreamingResponse(
        lines(),
        media_type="application/jsonl",
        headers={
            "Content-Disposition": f'attachment; filename="cairn-audit-{stamp}.jsonl"',
            "X-Content-Type-Options": "nosniff",
            "Cache-Control": "no-store",
        },
    )
