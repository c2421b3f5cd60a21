"""`cairn retention set/show/apply` and `cairn artifact ttl`: TTLs and keep policies.

Embedded, everything runs on the local database and store; through a server (CAIRN_URL) the
server evaluates (project admins set policies, server administrators apply them)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_USAGE, JsonOpt, fail

if TYPE_CHECKING:
    from cairn.service.retention import Policy, RetentionReport, Target, TtlInfo

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Retention: delete versions whose TTL passed, keep the last or best N (see "
    "docs/lifecycle.md).",
)

ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project", "-p", help="Project. Default: $CAIRN_PROJECT, else 'default'.",
        show_default=False,
    ),
]  # fmt: skip


def _target(artifact: str | None, project: str | None, collection: str | None) -> Target:
    from cairn.service.retention import Target

    if collection is not None:
        if artifact is not None or project is not None:
            fail("give an artifact (and --project), or --collection, not both", EXIT_USAGE)
        registry, sep, name = collection.partition("/")
        if not sep or not name or "/" in name:
            fail(f"--collection is REGISTRY/COLLECTION, not {collection!r}", EXIT_USAGE)
        return Target(registry=registry, collection=name)
    if artifact is None:
        return Target(project=output.resolve_project(project))
    from cairn.cli.common import split_name

    proj, name = split_name(artifact, project)
    return Target(project=proj, artifact=name)


def _policy_row(p: Policy) -> list[str]:
    what = {"project": "project", "artifact": "artifact", "collection": "collection"}[p.kind]
    return [what, p.target.label(), "; ".join(p.rules()) or "(none)", p.updated_by or ""]


@app.command("set")
def set_policy(
    artifact: Annotated[
        str | None,
        typer.Argument(
            help="The artifact ([project/]name). Without it: the project's defaults (--project), "
            "or a registry collection's (--collection).",
            show_default=False,
        ),
    ] = None,
    ttl: Annotated[
        str | None,
        typer.Option(
            "--ttl",
            help="Default time to live of the versions (of a collection: of its links), from "
            "their creation: 30d, 12h, 2w ... or 'none'.",
            show_default=False,
        ),
    ] = None,
    keep_last: Annotated[
        int | None,
        typer.Option("--keep-last", help="Keep the newest N versions.", show_default=False),
    ] = None,
    keep_best: Annotated[
        int | None,
        typer.Option("--keep-best", help="Keep the best N versions by --by.", show_default=False),
    ] = None,
    by: Annotated[
        str | None,
        typer.Option(
            "--by",
            help="The metadata key --keep-best ranks by, lowest first (val_loss); '-key' for "
            "highest first (-accuracy).",
            show_default=False,
        ),
    ] = None,
    keep_used: Annotated[
        int | None,
        typer.Option(
            "--keep-used",
            metavar="DAYS",
            help="Keep versions a run used within DAYS days.",
            show_default=False,
        ),
    ] = None,
    unset: Annotated[
        list[str] | None,
        typer.Option(
            "--unset",
            help="Clear a rule (repeat): ttl, keep-last, keep-best, keep-used.",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = None,
    collection: Annotated[
        str | None,
        typer.Option(
            "--collection",
            help="A registry collection (REGISTRY/COLLECTION): a TTL for its links.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Set retention rules of an artifact, a project (defaults for its artifacts) or a registry
    collection. Versions holding an alias, linked into a registry, or used by a run within
    --keep-used days are always kept. Nothing is deleted until `cairn retention apply` (or a
    server's schedule)."""
    from cairn.cli.common import backend
    from cairn.service.retention import changes_of

    changes = changes_of(
        ttl=ttl, keep_last=keep_last, keep_best=keep_best, by=by, keep_used_days=keep_used,
        unset=unset or (),
    )  # fmt: skip
    if not changes:
        fail(
            "nothing to set: give --ttl, --keep-last, --keep-best with --by, --keep-used or "
            "--unset",
            EXIT_USAGE,
        )
    target = _target(artifact, project, collection)
    policy = backend().retention.set_policy(target, changes)
    if json_out:
        output.print_json(policy.to_dict())
        return
    rules = "; ".join(policy.rules()) or "no rules (policy removed)"
    output.echo(f"retention of {policy.kind} {policy.target.label()}: {rules}")
    output.hint("see what it would delete: cairn retention apply --dry-run")


@app.command("show")
def show(
    project: ProjectOpt = None,
    registry: Annotated[
        str | None,
        typer.Option(
            "--registry", "-r", help="A registry's collections instead.", show_default=False
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The retention policies of a project (its own and its artifacts') or a registry."""
    from cairn.cli.common import backend

    if registry is not None:
        found = backend().retention.policies(registry=registry)
    else:
        found = backend().retention.policies(project=output.resolve_project(project))
    if json_out:
        output.print_json([p.to_dict() for p in found])
        return
    if not found:
        output.echo("no retention policies")
        return
    t = output.table("SCOPE", "NAME", "RULES", "SET BY")
    for p in found:
        output.add_row(t, *_policy_row(p))
    t.print()


def _print_report(report: RetentionReport) -> None:
    h = output.human_size
    verb = "would delete" if report.dry_run else "deleted"
    for u in report.unlinked:
        output.echo(
            f"{'would unlink' if report.dry_run else 'unlinked'} {u.registry}/{u.collection}:"
            f"v{u.number} ({u.source}): linked {output.when(u.linked_at)}, link TTL passed"
        )
    if report.removed:
        t = output.table("VERSION", "REASON", "RULE", "SIZE", "CREATED")
        for r in report.removed:
            output.add_row(
                t, f"{r.project}/{r.artifact}:v{r.version}", r.reason, r.rule, h(r.size),
                output.when(r.created_at),
            )  # fmt: skip
        t.print()
    for s in report.spared:
        output.echo(f"kept {s.project}/{s.artifact}:v{s.version}: {s.because} ({s.rule})")
    for note in report.notes:
        output.echo(f"note: {note}")
    expired = sum(1 for r in report.removed if r.reason == "expired")
    output.echo(
        f"{verb.capitalize()} {len(report.removed)} version(s) ({expired} expired, "
        f"{len(report.removed) - expired} by policy); kept {len(report.spared)} protected."
    )
    if report.removed:
        line = f"They refer to {h(report.logical_bytes)} of files"
        if report.referenced_bytes is not None and report.exclusive_bytes is not None:
            shared = report.referenced_bytes - report.exclusive_bytes
            line += (
                f" ({h(report.referenced_bytes)} stored after dedup): {h(report.exclusive_bytes)} "
                f"only they hold is freed by gc; {h(shared)} shared with kept versions stays"
            )
        output.echo(line + ".")
    if report.freed_after_gc is not None:
        kept_whole = ""
        if report.exclusive_bytes and report.freed_after_gc < report.exclusive_bytes:
            kept_whole = " (gc keeps a pack more than half live whole: the rest goes later)"
        output.echo(f"gc freed {h(report.freed_after_gc)}{kept_whole}.")
    elif report.removed and not report.dry_run:
        output.hint("free the bytes: cairn gc (after its grace period)")


@app.command("apply")
def apply(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be deleted; change nothing.")
    ] = False,
    project: Annotated[
        str | None,
        typer.Option(
            "--project", "-p", help="Only this project. Default: all.", show_default=False
        ),
    ] = None,
    gc: Annotated[
        bool,
        typer.Option(
            "--gc", help="Embedded: run `cairn gc` right after, and report the bytes it freed."
        ),
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="HOURS",
            min=0,
            help="With --gc: leave packs written less than this many hours ago alone.",
        ),
    ] = 24.0,
    json_out: JsonOpt = False,
) -> None:
    """Delete the versions whose TTL passed and those no keep rule keeps, unless protected
    (an alias, a registry link, a recent use), and unlink expired collection links. The
    report says why each version went and how many bytes gc frees: deduplicated objects that
    kept versions share are not freed. Through a server: server administrators only."""
    from cairn.cli.common import api, backend
    from cairn.service.sql.retention import SqlRetention

    embedded = isinstance(backend().retention, SqlRetention)
    if gc and not embedded:
        fail("--gc runs where the store is: on the server, run `cairn gc --store ...`", EXIT_USAGE)
    report = api(project).apply_retention(project, dry_run=dry_run)
    if gc and not dry_run:
        report.freed_after_gc = _gc(grace)
    if json_out:
        output.print_json(report.to_dict())
        return
    _print_report(report)


def _gc(grace_hours: float) -> int:
    from cairn.cli.common import backend
    from cairn.objects.gc import collect
    from cairn.objects.packs.bucket import BucketPackStore
    from cairn.objects.packs.local import LocalPackStore
    from cairn.service.liveness import live_objects

    b = backend()
    if not isinstance(b.object_store, LocalPackStore | BucketPackStore):
        fail("--gc needs the embedded store")
    registry = b.registry
    return collect(
        b.object_store,
        lambda: live_objects(registry),
        grace_seconds=grace_hours * 3600,
        dry_run=False,
    ).bytes_freed


def _ttl_line(info: TtlInfo, label: str) -> str:
    from cairn.service.retention import format_duration

    if info.ttl is None:
        why = " (set on the version)" if info.own == 0 else ""
        return f"{label}: no TTL, never expires{why}"
    return (
        f"{label}: TTL {format_duration(info.ttl)} ({info.source}), expires "
        f"{output.when(info.expires_at)}"
    )


def ttl(
    ref: Annotated[str, typer.Argument(help="The version: [project/]name:vN (or an alias).")],
    duration: Annotated[
        str | None,
        typer.Argument(
            help="30d, 12h, 2w ...; 'none': never expires; 'inherit': the artifact's or "
            "project's default. Omit to show it.",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show or set a version's time to live (counted from its creation). An expired version is
    deleted by `cairn retention apply` (or a server's schedule) unless it is protected."""
    from cairn.cli.common import backend, open_version
    from cairn.service.retention import parse_duration

    art = open_version(ref, project, explicit=True)
    retention = backend().retention
    if duration is None:
        info = retention.ttl(art.id)
    else:
        seconds = None if duration.strip().lower() == "inherit" else parse_duration(duration)
        info = retention.set_ttl(art.id, seconds)
    if json_out:
        output.print_json(info.to_dict())
        return
    output.echo(_ttl_line(info, f"{art.project}/{art.name}:{art.version}"))


__all__ = ["app", "ttl"]
