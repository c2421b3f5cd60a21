"""Webhooks: configured per project or registry by its admins (server administrators are
admins of everything). A webhook the caller may not administer does not exist for them (404).
The secret is shown once, when the webhook is created.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query
from pydantic import Field

from cairn.errors import NotFoundError, PermissionDeniedError
from cairn.server.deps import Caller, Int64, Services, Svc
from cairn.server.routes_registries import require_registry
from cairn.server.routes_registry import Strict
from cairn.service.accounts import Principal
from cairn.service.sql.webhooks import WebhookInfo, WebhookStore

router = APIRouter(tags=["webhooks"])


class CreateWebhook(Strict):
    url: str = Field(max_length=2048)
    events: list[str] = Field(default_factory=list, max_length=64)
    secret: str | None = Field(default=None, max_length=255)


def _store(svc: Services) -> WebhookStore:
    return WebhookStore(svc.registry.engine)


def _user(caller: Principal) -> str | None:
    return None if caller.open else caller.name


def _require_admin(
    svc: Services, caller: Principal, project: str | None, registry: str | None
) -> None:
    if project is not None:
        svc.accounts.require(caller, project, "admin")
    elif registry is not None:
        require_registry(svc, caller, registry, "admin")


def _webhook(svc: Services, caller: Principal, webhook_id: int) -> WebhookInfo:
    """The webhook, when the caller administers its project or registry; else not found."""
    try:
        hook = _store(svc).get(webhook_id)
        _require_admin(svc, caller, hook.project, hook.registry)
    except (NotFoundError, PermissionDeniedError):
        raise NotFoundError(
            f"webhook {webhook_id} does not exist or you do not administer its project or registry"
        ) from None
    return hook


def _created(svc: Services, caller: Principal, body: CreateWebhook, **scope: str) -> Any:
    hook, secret = _store(svc).add(
        body.url, events=body.events, secret=body.secret, user=_user(caller), **scope
    )
    return {"webhook": hook.to_dict(), "secret": secret}


@router.post("/projects/{project}/webhooks", status_code=201, summary="Add a webhook to a project")
def add_project_webhook(project: str, body: CreateWebhook, svc: Svc, caller: Caller) -> Any:
    """Project admins. Answers the webhook and its signing secret (shown only now)."""
    _require_admin(svc, caller, project, None)
    return _created(svc, caller, body, project=project)


@router.get("/projects/{project}/webhooks", summary="A project's webhooks")
def list_project_webhooks(project: str, svc: Svc, caller: Caller) -> Any:
    _require_admin(svc, caller, project, None)
    return {"items": [h.to_dict() for h in _store(svc).list_webhooks(project=project)]}


@router.post(
    "/registries/{registry}/webhooks", status_code=201, summary="Add a webhook to a registry"
)
def add_registry_webhook(registry: str, body: CreateWebhook, svc: Svc, caller: Caller) -> Any:
    """Registry admins. Answers the webhook and its signing secret (shown only now)."""
    _require_admin(svc, caller, None, registry)
    return _created(svc, caller, body, registry=registry)


@router.get("/registries/{registry}/webhooks", summary="A registry's webhooks")
def list_registry_webhooks(registry: str, svc: Svc, caller: Caller) -> Any:
    _require_admin(svc, caller, None, registry)
    return {"items": [h.to_dict() for h in _store(svc).list_webhooks(registry=registry)]}


@router.get("/webhooks/{webhook_id}", summary="A webhook")
def get_webhook(webhook_id: Int64, svc: Svc, caller: Caller) -> Any:
    return _webhook(svc, caller, webhook_id).to_dict()


@router.delete("/webhooks/{webhook_id}", status_code=204, summary="Remove a webhook")
def remove_webhook(webhook_id: Int64, svc: Svc, caller: Caller) -> None:
    """Its pending deliveries and its log go with it."""
    _webhook(svc, caller, webhook_id)
    _store(svc).remove(webhook_id)


@router.post("/webhooks/{webhook_id}/test", status_code=202, summary="Send a test event")
def test_webhook(webhook_id: Int64, svc: Svc, caller: Caller) -> Any:
    """Queues a ``webhook.test`` event for this webhook; answers the delivery (see its log)."""
    _webhook(svc, caller, webhook_id)
    return _store(svc).send_test(webhook_id, user=_user(caller)).to_dict()


@router.get("/webhooks/{webhook_id}/deliveries", summary="A webhook's delivery log")
def webhook_deliveries(
    webhook_id: Int64,
    svc: Svc,
    caller: Caller,
    limit: int = Query(50, ge=1, le=1000),
    status: str | None = Query(None, pattern="^(pending|delivering|delivered|failed)$"),
) -> Any:
    """Newest first, each with its attempts (time, status code, error, response time)."""
    _webhook(svc, caller, webhook_id)
    found = _store(svc).deliveries(webhook_id, limit=limit, status=status)
    return {"items": [d.to_dict() for d in found]}
