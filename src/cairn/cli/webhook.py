"""`cairn webhook add/ls/rm/test/log/deliver`: POST events of a project or registry to a URL.

Through a server (CAIRN_URL) the server delivers; in the embedded mode events are queued in the
local database and `cairn webhook deliver` sends what is due (run it from cron or a loop)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_USAGE, JsonOpt, fail

if TYPE_CHECKING:
    from cairn.client.webhooks import RemoteWebhooks
    from cairn.service.sql.webhooks import DeliveryInfo, WebhookStore

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Webhooks: POST signed events (version created, alias moved, ...) to a URL.",
)

RegistryOpt = Annotated[
    str | None,
    typer.Option(
        "--registry", "-r", help="A registry's webhooks instead of a project's.", show_default=False
    ),
]
ProjectOnlyOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-p",
        help="Project. Default: $CAIRN_PROJECT, else 'default'.",
        show_default=False,
    ),
]


def webhooks() -> RemoteWebhooks | WebhookStore:
    """The webhooks of the current backend: the server's, or the embedded database's."""
    from cairn.cli.common import backend

    registry: Any = backend().registry
    http = getattr(registry, "http", None)
    if http is not None:
        from cairn.client.webhooks import RemoteWebhooks

        return RemoteWebhooks(http)
    from cairn.service.sql.webhooks import WebhookStore

    return WebhookStore(registry.engine)


def _scope(project: str | None, registry: str | None) -> dict[str, str]:
    if registry is not None:
        if project is not None:
            fail("a webhook belongs to a project or a registry, not both", EXIT_USAGE)
        return {"registry": registry}
    return {"project": output.resolve_project(project)}


@app.command("add")
def add(
    url: Annotated[str, typer.Argument(help="Where to POST events (http:// or https://).")],
    event: Annotated[
        list[str] | None,
        typer.Option(
            "--event",
            "-e",
            help="Only these event types (repeat): version.created, alias.moved, alias.*, ... "
            "Default: all.",
            show_default=False,
        ),
    ] = None,
    secret: Annotated[
        str | None, typer.Option("--secret", help="The signing secret (default: a new random one).")
    ] = None,
    project: ProjectOnlyOpt = None,
    registry: RegistryOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Add a webhook. Prints its signing secret once: receivers check the X-Cairn-Signature
    header with it (see docs/lifecycle.md)."""
    hook, key = webhooks().add(url, events=event or [], secret=secret, **_scope(project, registry))
    if json_out:
        output.print_json({"webhook": hook.to_dict(), "secret": key})
        return
    where = f"registry {hook.registry}" if hook.registry else f"project {hook.project}"
    output.echo(f"webhook {hook.id} on {where} -> {hook.url}")
    output.echo(f"secret: {key}")
    output.hint("keep the secret: it is not shown again")


@app.command("ls")
def ls(
    project: ProjectOnlyOpt = None, registry: RegistryOpt = None, json_out: JsonOpt = False
) -> None:
    """List the webhooks of a project or registry."""
    hooks = webhooks().list_webhooks(**_scope(project, registry))
    if json_out:
        output.print_json([h.to_dict() for h in hooks])
        return
    if not hooks:
        output.echo("no webhooks")
        return
    t = output.table("ID", "URL", "EVENTS", "CREATED BY")
    for h in hooks:
        output.add_row(t, str(h.id), h.url, ", ".join(h.events) or "*", h.created_by or "")
    t.print()


@app.command("rm")
def rm(webhook_id: Annotated[int, typer.Argument(help="The webhook's id (see `ls`).")]) -> None:
    """Remove a webhook (its pending deliveries and its log too)."""
    webhooks().remove(webhook_id)
    output.echo(f"removed webhook {webhook_id}")


@app.command("test")
def test(
    webhook_id: Annotated[int, typer.Argument(help="The webhook's id.")],
    json_out: JsonOpt = False,
) -> None:
    """Send a `webhook.test` event (see the result with `cairn webhook log`)."""
    hooks = webhooks()
    queued = hooks.send_test(webhook_id)
    if not hasattr(hooks, "http"):
        _deliver_now()
    if json_out:
        output.print_json(queued.to_dict())
        return
    output.echo(f"queued test event {queued.event_id} for webhook {webhook_id}")


def _print_deliveries(found: list[DeliveryInfo]) -> None:
    t = output.table("DELIVERY", "EVENT", "STATUS", "ATTEMPTS", "CODE", "MS", "LAST ERROR")
    for d in found:
        output.add_row(
            t,
            str(d.id),
            d.event_type,
            d.status,
            str(d.attempts),
            "" if d.last_status_code is None else str(d.last_status_code),
            "" if d.response_ms is None else str(d.response_ms),
            d.last_error or "",
        )
    t.print()


@app.command("log")
def log(
    webhook_id: Annotated[int, typer.Argument(help="The webhook's id.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=1000, help="How many.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """The webhook's deliveries, newest first, with every attempt (--json)."""
    found = webhooks().deliveries(webhook_id, limit=limit)
    if json_out:
        output.print_json([d.to_dict() for d in found])
        return
    if not found:
        output.echo("no deliveries yet")
        return
    _print_deliveries(found)


def _deliver_now() -> int:
    from cairn.cli.common import backend
    from cairn.service.webhooks import WebhookWorker

    worker = WebhookWorker(backend().registry.engine)  # type: ignore[attr-defined]
    try:
        return worker.run_once()
    finally:
        worker.stop()


@app.command("deliver")
def deliver() -> None:
    """Embedded mode: send every delivery that is due now (a server does this by itself)."""
    from cairn.cli.common import backend

    if hasattr(backend().registry, "http"):
        fail("the server delivers webhooks itself; `deliver` is for the embedded mode", EXIT_USAGE)
    output.echo(f"{_deliver_now()} attempt(s) made")


__all__ = ["app"]
