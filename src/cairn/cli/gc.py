"""`cairn gc`: free the store space of deleted versions (a local store or packs on a bucket)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt, QuietOpt

if TYPE_CHECKING:
    from cairn.objects.packs import PackStore
    from cairn.service.registry import Registry


def _open_store(
    store: str, endpoint: str | None, database_url: str | None
) -> tuple[PackStore, Registry]:
    """A server's store (``--store``) and its database, opened directly."""
    from cairn import config
    from cairn.errors import CairnError
    from cairn.objects.store import open_object_store
    from cairn.service.sql import open_registry

    try:
        opened = open_object_store(
            store,
            cache_dir=config.cairn_dir() / "cache" / "stores",
            endpoint=endpoint,
            must_exist=True,
        )
    except CairnError as exc:
        output.fail(f"--store {store}: {exc}")
    return opened, open_registry(database_url)


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
            help="Leave packs (and uploads) written less than this many hours ago alone.",
        ),
    ] = 24.0,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Collect a server's store instead of the embedded one: its folder, or its "
            "bucket (s3://bucket/prefix, gs://…, az://…), with the server's database "
            "(--database-url). Default: $CAIRN_STORE when set, else $CAIRN_DIR/store.",
            show_default=False,
        ),
    ] = None,
    store_endpoint: Annotated[
        str | None,
        typer.Option(
            "--store-endpoint",
            help="The endpoint of an S3-compatible service (MinIO, R2, Ceph ...) or an "
            "emulator. Default: $AWS_ENDPOINT_URL.",
            show_default=False,
        ),
    ] = None,
    database_url: Annotated[
        str | None,
        typer.Option(
            "--database-url",
            help="With --store: the server's metadata database. Default: "
            "$CAIRN_DATABASE_URL, else the SQLite file $CAIRN_DIR/cairn.db.",
            show_default=False,
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete the stored objects no live version (nor any run's git diff) refers to.

    Packs written within the grace period are never touched, so logging can go on meanwhile,
    also on a bucket shared by several servers and embedded loggers. A pack holding no live
    object is deleted; one less than half live is rewritten (its live objects copied to a new
    pack first). On a bucket, direct uploads never committed are removed too. Runs where the
    store is: not through a server (CAIRN_URL).
    """
    from cairn import config

    if config.url_from_env():
        output.fail(
            "gc runs on the server / embedded local store only: unset CAIRN_URL and run "
            "`cairn gc` where the store is (for a server on a bucket: `cairn gc --store "
            "s3://… --database-url …`)"
        )
    if store_endpoint and not store:
        output.fail("--store-endpoint needs --store")
    if database_url and not store:
        output.fail("--database-url needs --store (embedded mode reads $CAIRN_DATABASE_URL)")
    from cairn.objects.gc import collect
    from cairn.objects.packs.bucket import BucketPackStore
    from cairn.objects.packs.local import LocalPackStore
    from cairn.service.liveness import expire_parts, live_objects

    packs: object
    if store:
        packs, registry = _open_store(store, store_endpoint, database_url)
    else:
        from cairn.cli.common import backend

        b = backend()
        packs, registry = b.object_store, b.registry
    if not isinstance(packs, LocalPackStore | BucketPackStore):
        output.fail("gc runs on the server / embedded local store only")
    try:
        # parts of distributed versions never finished are abandoned like stale uploads
        parts_removed = expire_parts(registry, grace * 3600, dry_run=dry_run)
        with output.status_line("gc", not json_out and not output.quiet(quiet)) as progress:
            report = collect(
                packs,
                lambda: live_objects(registry),
                grace_seconds=grace * 3600,
                dry_run=dry_run,
                progress=progress,
            )
        report.parts_removed = parts_removed
    finally:
        if store:
            packs.close()
            registry.close()
    if json_out:
        output.print_json(report.to_dict())
        return
    if output.quiet(quiet):
        output.echo(str(report.bytes_freed))
        return
    verb = "Would free" if dry_run else "Freed"
    leftovers = (
        f"{report.uploads_removed} stale uploads removed"
        if report.uploads_removed or isinstance(packs, BucketPackStore)
        else f"{report.tmp_packs_removed} temp packs removed"
    )
    output.echo(
        f"{verb} {output.human_size(report.bytes_freed)}: {report.objects_dropped} objects "
        f"dropped, {report.packs_deleted} packs deleted, {report.packs_rewritten} rewritten, "
        f"{leftovers}" + (f", {parts_removed} abandoned parts removed." if parts_removed else ".")
    )
    output.echo(
        f"Store: {output.human_size(report.store_bytes_before)} before, "
        f"{output.human_size(report.store_bytes_after)} after "
        f"({report.live_objects} live objects)."
    )
    if report.objects_rescued:
        output.echo(
            f"{report.objects_rescued} objects kept: a version committed meanwhile uses them."
        )
