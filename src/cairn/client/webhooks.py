"""Webhooks through a server: the same methods as `cairn.service.sql.webhooks.WebhookStore`
(which the embedded mode uses on its own database)."""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from cairn.client.http import Http
from cairn.core.names import check_project
from cairn.service.sql.webhooks import DeliveryInfo, WebhookInfo, check_events, check_url
from cairn.service.validate import check_int


def _seg(value: str) -> str:
    return quote(value, safe="")


class RemoteWebhooks:
    def __init__(self, http: Http) -> None:
        self.http = http

    def add(
        self,
        url: str,
        *,
        project: str | None = None,
        registry: str | None = None,
        events: list[str] | None = None,
        secret: str | None = None,
        user: str | None = None,
    ) -> tuple[WebhookInfo, str]:
        check_url(url)
        body: dict[str, Any] = {"url": url, "events": check_events(events), "secret": secret}
        if project is not None:
            check_project(project)
            path = f"/projects/{_seg(project)}/webhooks"
        elif registry is not None:
            path = f"/registries/{_seg(registry)}/webhooks"
        else:
            from cairn.errors import InvalidInputError

            raise InvalidInputError("a webhook belongs to a project or to a registry (one)")
        data = self.http.json("POST", path, json=body)
        return WebhookInfo.from_dict(data["webhook"]), data["secret"]

    def list_webhooks(
        self, *, project: str | None = None, registry: str | None = None
    ) -> list[WebhookInfo]:
        if project is not None:
            path = f"/projects/{_seg(project)}/webhooks"
        elif registry is not None:
            path = f"/registries/{_seg(registry)}/webhooks"
        else:
            from cairn.errors import InvalidInputError

            raise InvalidInputError("list the webhooks of a project or of a registry")
        return [WebhookInfo.from_dict(h) for h in self.http.json("GET", path)["items"]]

    def get(self, webhook_id: int) -> WebhookInfo:
        check_int("webhook id", webhook_id)
        return WebhookInfo.from_dict(self.http.json("GET", f"/webhooks/{webhook_id}"))

    def remove(self, webhook_id: int) -> None:
        check_int("webhook id", webhook_id)
        self.http.json("DELETE", f"/webhooks/{webhook_id}")

    def send_test(self, webhook_id: int, *, user: str | None = None) -> DeliveryInfo:
        check_int("webhook id", webhook_id)
        return DeliveryInfo.from_dict(self.http.json("POST", f"/webhooks/{webhook_id}/test"))

    def deliveries(
        self, webhook_id: int, *, limit: int = 50, status: str | None = None
    ) -> list[DeliveryInfo]:
        check_int("webhook id", webhook_id)
        data = self.http.json(
            "GET",
            f"/webhooks/{webhook_id}/deliveries",
            params={"limit": limit, "status": status},
        )
        return [DeliveryInfo.from_dict(d) for d in data["items"]]


__all__ = ["RemoteWebhooks"]
