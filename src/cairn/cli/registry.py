"""`cairn registry ...`, `cairn link`, `cairn unlink`, `cairn search` and `cairn audit export`:
publish versions into registries above projects, find versions by metadata, read the audit
log."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_USAGE, JsonOpt, ProjectOpt, fail

if TYPE_CHECKING:
    from cairn.core.records import LinkInfo, VersionInfo

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Registries above projects: collections of linked versions, roles, protected aliases.",
)
audit_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Read a server's audit log."
)

WhereOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--where",
        metavar="CLAUSE",
        help="A filter such as 'metadata.acc > 0.9', 'tags in [\"eval\"]', 'name ~ bert' "
        "(repeat: all must hold). OP is =, !=, >, >=, <, <=, ~ (contains), in, not in.",
        show_default=False,
    ),
]
SortOpt = Annotated[
    str | None,
    typer.Option(
        "--sort",
        metavar="FIELD",
        help="Order by a field, '-' for descending: -metadata.acc, created_at, version.",
        show_default=False,
    ),
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="How many to show.")]
AtOpt = Annotated[
    str | None,
    typer.Option(
        "--at",
        metavar="TIME",
        help="Answer as of this time, e.g. 2026-11-30T12:00Z (no zone: local time).",
        show_default=False,
    ),
]


def parse_time(text: str) -> datetime:
    """An ISO date and time; without a zone it is the local time."""
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        fail(f"cannot read the time {text!r}: write e.g. 2026-11-30T12:00Z", EXIT_USAGE)
    return when if when.tzinfo is not None else when.astimezone()


def filters_of(where: list[str] | None) -> dict[str, Any] | None:
    from cairn.service.search import parse_where

    return parse_where(where) if where else None


def print_versions(infos: list[VersionInfo], json_out: bool) -> None:
    from cairn.cli.common import version_json

    if json_out:
        output.print_json([version_json(i) for i in infos])
        return
    if not infos:
        output.echo("No versions match.")
        return
    t = output.table("VERSION", "ALIASES", "TAGS", "SIZE", "CREATED", "METADATA")
    for i in infos:
        output.add_row(
            t,
            i.qualified_name,
            output.comma(i.aliases),
            output.comma(i.tags),
            output.human_size(i.size),
            output.when(i.created_at),
            output.one_line(json.dumps(i.metadata, sort_keys=True)),
        )
    t.print()


def print_links(links: list[LinkInfo], json_out: bool) -> None:
    if json_out:
        output.print_json([x.to_dict() for x in links])
        return
    if not links:
        output.echo("No linked versions match.")
        return
    t = output.table("VERSION", "ALIASES", "LINKED", "TARGET", "METADATA")
    for x in links:
        output.add_row(
            t,
            x.qualified_name,
            output.comma(x.aliases),
            output.when(x.linked_at),
            x.target.qualified_name,
            output.one_line(json.dumps(x.target.metadata, sort_keys=True)),
        )
    t.print()


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(metavar="NAME", help="e.g. models", show_default=False)],
    description: Annotated[str, typer.Option("--description", help="What it holds.")] = "",
    protect: Annotated[
        list[str] | None,
        typer.Option(
            "--protect",
            metavar="ALIAS",
            help="An alias only maintainers may set, move or remove (repeat).",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Create a registry (on a server: administrators only; you become its admin)."""
    from cairn.cli.common import api

    info = api(None).create_registry(name, description, protect or [])
    output.echo(f"Created registry {info.name}" + (
        f" (protected aliases: {', '.join(info.protected_aliases)})"
        if info.protected_aliases else ""
    ))  # fmt: skip


@app.command("list")
def list_registries(json_out: JsonOpt = False) -> None:
    """The registries you can see."""
    from cairn.cli.common import api

    infos = api(None).registries()
    if json_out:
        output.print_json([r.to_dict() for r in infos])
        return
    t = output.table("REGISTRY", "COLLECTIONS", "PROTECTED", "DESCRIPTION")
    for r in infos:
        output.add_row(
            t,
            r.name,
            str(r.collection_count),
            output.comma(r.protected_aliases),
            output.one_line(r.description),
        )
    t.print()


@app.command("collections")
def collections(
    name: Annotated[str, typer.Argument(metavar="REGISTRY", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """The collections of a registry."""
    from cairn.cli.common import api

    infos = api(None).collections(name, limit=1000)
    if json_out:
        output.print_json([c.to_dict() for c in infos])
        return
    t = output.table("COLLECTION", "TYPE", "VERSIONS", "LATEST", "UPDATED")
    for c in infos:
        latest = f"v{c.latest_version}" if c.latest_version is not None else "-"
        output.add_row(t, c.path, c.type, str(c.version_count), latest, output.when(c.updated_at))
    t.print()


@app.command("versions")
def versions(
    path: Annotated[str, typer.Argument(metavar="REGISTRY/COLLECTION", show_default=False)],
    where: WhereOpt = None,
    sort: SortOpt = None,
    limit: LimitOpt = 100,
    json_out: JsonOpt = False,
) -> None:
    """A collection's linked versions, newest first (or filtered and sorted)."""
    from cairn.cli.common import backend
    from cairn.sdk.resolve import split_collection

    registry, collection = split_collection(path)
    links = backend().registry.search_links(
        registry, collection=collection, filters=filters_of(where), order=sort, limit=limit
    )
    print_links(links, json_out)


@app.command("history")
def history(
    path: Annotated[str, typer.Argument(metavar="REGISTRY/COLLECTION", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Links, unlinks and alias moves of a collection, oldest first: who did what, when."""
    from cairn.cli.common import api

    entries = api(None).collection_history(path)
    if json_out:
        output.print_json([h.to_dict() for h in entries])
        return
    for h in entries:
        who = f" by {h.user}" if h.user else ""
        if h.field == "alias":
            what = (
                f"alias {h.alias} -> v{h.version}"
                if h.version is not None
                else f"alias {h.alias} removed (was v{h.old})"
            )
        elif h.field in ("linked", "unlinked"):
            what = f"{h.field} v{h.version}" + (f" ({h.new})" if h.new else "")
        else:
            what = f"{h.field}: {output.json_value(h.new)}"
        output.echo(f"{output.when(h.at)}  {what}{who}")


@app.command("members")
def members(
    name: Annotated[str, typer.Argument(metavar="REGISTRY", show_default=False)],
    json_out: JsonOpt = False,
) -> None:
    """Who has which role in a registry."""
    from cairn.cli.common import backend

    found = backend().registry.registry_members(name)
    if json_out:
        output.print_json(found)
        return
    for user, role in found.items():
        output.echo(f"{user}  {role}")


@app.command("role")
def role(
    name: Annotated[str, typer.Argument(metavar="REGISTRY", show_default=False)],
    user: Annotated[str, typer.Argument(metavar="USER", show_default=False)],
    new_role: Annotated[
        str,
        typer.Argument(
            metavar="ROLE", help="viewer, member, maintainer, admin, or none.", show_default=False
        ),
    ],
) -> None:
    """Give a user a role in a registry (registry admins)."""
    from cairn.cli.common import backend

    backend().registry.set_registry_member(name, user, None if new_role == "none" else new_role)
    output.echo(f"{user} is now {new_role} in registry {name}.")


@app.command("alias")
def alias(
    ref: Annotated[str, typer.Argument(metavar="REGISTRY/COLLECTION:VER", show_default=False)],
    add: Annotated[list[str] | None, typer.Option("--add", metavar="ALIAS")] = None,
    remove: Annotated[list[str] | None, typer.Option("--remove", metavar="ALIAS")] = None,
) -> None:
    """Add aliases to a collection version (moving them from others) or remove them."""
    from cairn.cli.common import api

    link = api(None).set_aliases(ref, add=add or [], remove=remove or [])
    output.echo(f"{link.qualified_name} aliases: {output.comma(link.aliases)}")


def link(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:VER]",
            help="The version to link, e.g. vision/clf:v3.",
            show_default=False,
        ),
    ],
    target: Annotated[str, typer.Argument(metavar="REGISTRY/COLLECTION", show_default=False)],
    aliases: Annotated[
        list[str] | None,
        typer.Option("--alias", metavar="ALIAS", help="Aliases to point at it (repeat)."),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Link a version into a registry's collection, without copying bytes."""
    from cairn.cli.common import open_version

    art = open_version(ref, project)
    made = art.link(target, aliases=aliases or [])
    output.echo(
        f"Linked {made.target.qualified_name} as {made.qualified_name}"
        + (f" ({output.comma(made.aliases)})" if made.aliases else "")
    )


def unlink(
    ref: Annotated[str, typer.Argument(metavar="REGISTRY/COLLECTION:VER", show_default=False)],
) -> None:
    """Unlink a collection version (recorded in its history; the version itself stays)."""
    from cairn.cli.common import api

    gone = api(None).unlink(ref)
    output.echo(f"Unlinked {gone.qualified_name} ({gone.target.qualified_name}).")


def search(
    where: WhereOpt = None,
    sort: SortOpt = None,
    project: Annotated[
        str | None,
        typer.Option("--project", "-p", help="Search one project.", show_default=False),
    ] = None,
    registry: Annotated[
        str | None,
        typer.Option("--registry", help="Search a registry's collections.", show_default=False),
    ] = None,
    limit: LimitOpt = 100,
    json_out: JsonOpt = False,
) -> None:
    """Find versions by metadata, tags, aliases, type, run and dates across projects (every
    project you can read) or in a registry."""
    from cairn.cli.common import backend

    reg = backend().registry
    if registry is not None:
        if project is not None:
            fail("search a project or a registry, not both", EXIT_USAGE)
        links = reg.search_links(registry, filters=filters_of(where), order=sort, limit=limit)
        print_links(links, json_out)
        return
    infos = reg.search_versions(project=project, filters=filters_of(where), order=sort, limit=limit)
    print_versions(infos, json_out)


@audit_app.command("export")
def audit_export(
    user: Annotated[str | None, typer.Option("--user", show_default=False)] = None,
    project: Annotated[str | None, typer.Option("--project", show_default=False)] = None,
    registry: Annotated[str | None, typer.Option("--registry", show_default=False)] = None,
    action: Annotated[
        str | None,
        typer.Option(
            "--action",
            help="An action, or a prefix ending in '.' (collection.).",
            show_default=False,
        ),
    ] = None,
    since: Annotated[str | None, typer.Option("--since", metavar="TIME")] = None,
    until: Annotated[str | None, typer.Option("--until", metavar="TIME")] = None,
) -> None:
    """Write the audit log as JSON lines (one entry per line, oldest first) to stdout."""
    from cairn.cli.common import backend

    reg = backend().registry
    offset = 0
    while True:
        page = reg.audit_log(
            user=user,
            project=project,
            registry=registry,
            action=action,
            since=parse_time(since) if since else None,
            until=parse_time(until) if until else None,
            limit=1000,
            offset=offset,
        )
        for entry in page:
            typer.echo(json.dumps(entry.to_dict(), sort_keys=True))
        if len(page) < 1000:
            break
        offset += len(page)


__all__ = ["app", "audit_app", "link", "parse_time", "search", "unlink"]
