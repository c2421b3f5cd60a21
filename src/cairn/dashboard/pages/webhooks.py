"""Webhooks, for the admins of a project or registry (server administrators administer all):
the list, adding one (its signing secret is shown once, on the page that answers the form),
removing one, a webhook's delivery log (attempts, status codes, response times, last error) and
"send a test event".

A webhook the viewer may not administer does not exist for them (404), as in the API. Webhooks
live in the metadata database (`cairn.service.sql.webhooks.WebhookStore`); the server's delivery
thread sends them (``cairn webhook deliver`` does in the embedded mode).
"""

# No `from __future__ import annotations` here: FastAPI reads the handlers' parameter types.

from typing import Annotated, Any

from fastapi import Form, Path, Query
from fastapi.responses import Response

from cairn.dashboard.context import C, Ctx, P, Pages
from cairn.errors import InvalidInputError, NotFoundError, PermissionDeniedError, UnsupportedError
from cairn.service.sql import SqlRegistry
from cairn.service.sql.webhooks import EVENT_TYPES, WebhookInfo, WebhookStore

LOG_LIMIT = 50
STATUSES = ("pending", "delivering", "delivered", "failed")

WebhookId = Annotated[int, Path(ge=1, le=2**63 - 1)]  # beyond 64 bits: 422, not a crash

pages = Pages()


def _store(ctx: Ctx) -> WebhookStore:
    if not isinstance(ctx.registry, SqlRegistry):
        raise UnsupportedError("webhooks are kept in a metadata database this dashboard lacks")
    return WebhookStore(ctx.registry.engine)


def _user(ctx: Ctx) -> str | None:
    return None if ctx.viewer.open else ctx.viewer.name


def _need_admin(ctx: Ctx, project: str | None, registry: str | None) -> None:
    if project is not None:
        ctx.need(project, "admin")
    elif registry is not None:
        ctx.need_registry(registry, "admin")


def _webhook(ctx: Ctx, webhook_id: int) -> WebhookInfo:
    """The webhook, when the viewer administers its project or registry; else not found."""
    try:
        hook = _store(ctx).get(webhook_id)
        _need_admin(ctx, hook.project, hook.registry)
    except (NotFoundError, PermissionDeniedError):
        raise NotFoundError(
            f"webhook {webhook_id} does not exist or you do not administer its project or registry"
        ) from None
    return hook


def _list_page(
    ctx: Ctx,
    project: str | None,
    registry: str | None,
    *,
    status: int = 200,
    error: str = "",
    url: str = "",
    events: list[str] | None = None,
) -> Response:
    scope: dict[str, Any] = {"project": project} if project is not None else {"registry": registry}
    hooks = _store(ctx).list_webhooks(**scope)
    return ctx.page(
        "webhooks.html",
        status=status,
        scope_project=project,
        scope_registry=registry,
        hooks=hooks,
        event_types=EVENT_TYPES,
        error=error,
        url=url,
        events=events or [],
        action=ctx.urls.webhooks(project=project, registry=registry),
    )


def _add(
    ctx: Ctx, project: str | None, registry: str | None, url: str, events: list[str]
) -> Response:
    _need_admin(ctx, project, registry)
    url = url.strip()
    wanted = [e for e in events if e] or ["*"]
    try:
        hook, secret = _store(ctx).add(
            url, project=project, registry=registry, events=wanted, user=_user(ctx)
        )
    except InvalidInputError as exc:
        return _list_page(
            ctx, project, registry, status=400, error=str(exc), url=url, events=events
        )
    # shown once: in the message of the page the browser is sent to (an HttpOnly cookie that
    # page deletes), so that reloading it neither shows the secret again nor adds a webhook
    return ctx.redirect(
        ctx.urls.webhooks(project=project, registry=registry),
        f"Webhook {hook.id} added. Its signing secret, shown only now: {secret}",
    )


@pages.get("/p/{project}/webhooks")
def project_webhooks(ctx: C, project: str) -> Response:
    _need_admin(ctx, project, None)
    return _list_page(ctx, project, None)


@pages.post("/p/{project}/webhooks")
def add_project_webhook(
    ctx: P,
    project: str,
    url: Annotated[str, Form()] = "",
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    return _add(ctx, project, None, url, events or [])


@pages.get("/registries/{registry}/webhooks")
def registry_webhooks(ctx: C, registry: str) -> Response:
    _need_admin(ctx, None, registry)
    return _list_page(ctx, None, registry)


@pages.post("/registries/{registry}/webhooks")
def add_registry_webhook(
    ctx: P,
    registry: str,
    url: Annotated[str, Form()] = "",
    events: Annotated[list[str] | None, Form()] = None,
) -> Response:
    return _add(ctx, None, registry, url, events or [])


@pages.get("/webhooks/{webhook_id}")
def webhook_page(
    ctx: C,
    webhook_id: WebhookId,
    status: Annotated[str | None, Query(pattern="^(pending|delivering|delivered|failed)$")] = None,
) -> Response:
    hook = _webhook(ctx, webhook_id)
    deliveries = _store(ctx).deliveries(webhook_id, limit=LOG_LIMIT, status=status)
    waiting = any(d.status in ("pending", "delivering") for d in deliveries)
    return ctx.page(
        "webhook.html",
        hook=hook,
        deliveries=deliveries,
        status_filter=status or "",
        statuses=STATUSES,
        limit=LOG_LIMIT,
        refresh=waiting,
        back=ctx.urls.webhooks(project=hook.project, registry=hook.registry),
    )


@pages.post("/webhooks/{webhook_id}/test")
def send_test(ctx: P, webhook_id: WebhookId) -> Response:
    _webhook(ctx, webhook_id)
    delivery = _store(ctx).send_test(webhook_id, user=_user(ctx))
    return ctx.redirect(
        ctx.urls.webhook(webhook_id),
        f"Test event queued (delivery {delivery.id}); its attempts appear below.",
    )


@pages.post("/webhooks/{webhook_id}/remove")
def remove_webhook(ctx: P, webhook_id: WebhookId) -> Response:
    hook = _webhook(ctx, webhook_id)
    _store(ctx).remove(webhook_id)
    return ctx.redirect(
        ctx.urls.webhooks(project=hook.project, registry=hook.registry),
        f"Webhook {webhook_id} ({hook.url}) removed, with its pending deliveries and its log.",
    )
