"""`cairn gc`: free the store space of deleted versions (embedded local store only)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt, QuietOpt

if TYPE_CHECKING:
    from cairn.service.registry import Registry


def live_objects(registry: Registry) -> tuple[list[str], list[str]]:
    """(root digests of every live version, git diff objects of every run)."""
    roots = registry.all_root_digests()
    diffs: set[str] = set()
    for project in registry.list_projects():
        offset = 0
        while True:
            runs = registry.list_runs(project.name, limit=500, offset=offset)
            diffs.update(r.git_diff_digest for r in runs if r.git_diff_digest)
            if len(runs) < 500:
                break
            offset += len(runs)
    return roots, sorted(diffs)


def gc(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Only say what would be freed; change nothing.")
    ] = False,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            metavar="HOURS",
            min=0,
            help="Leave packs written less than this many hours ago alone.",
        ),
    ] = 24.0,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete the stored objects no live version (nor any run's git diff) refers to.

    Packs written within the grace period are never touched, so logging can go on meanwhile.
    A pack holding no live object is deleted; one less than half live is rewritten (its live
    objects copied to a new pack first). Runs on the embedded local store only.
    """
    if os.environ.get("CAIRN_URL") or os.environ.get("CAIRN_STORE"):
        output.fail(
            "gc runs on the server / embedded local store only: unset CAIRN_URL and "
            "CAIRN_STORE, or run `cairn gc` where the store is"
        )
    from cairn.cli.common import backend
    from cairn.objects.gc import collect
    from cairn.objects.packdb import PackedObjectDB

    b = backend()
    odb = b.odb
    if not isinstance(odb, PackedObjectDB):
        output.fail("gc runs on the server / embedded local store only")
    registry = b.registry
    report = collect(
        odb,
        lambda: live_objects(registry),
        grace_seconds=grace * 3600,
        dry_run=dry_run,
    )
    if json_out:
        output.print_json(report.to_dict())
        return
    if output.quiet(quiet):
        output.echo(str(report.bytes_freed))
        return
    verb = "Would free" if dry_run else "Freed"
    output.echo(
        f"{verb} {output.human_size(report.bytes_freed)}: {report.objects_dropped} objects "
        f"dropped, {report.packs_deleted} packs deleted, {report.packs_rewritten} rewritten, "
        f"{report.tmp_packs_removed} temp packs removed."
    )
    output.echo(
        f"Store: {output.human_size(report.store_bytes_before)} before, "
        f"{output.human_size(report.store_bytes_after)} after "
        f"({report.live_objects} live objects)."
    )
