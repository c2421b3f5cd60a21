"""`cairn check`: verify the store (a local one), forget damaged objects, rebuild index.db."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli import output
from cairn.cli.output import JsonOpt, QuietOpt

if TYPE_CHECKING:
    from cairn.service.registry import Registry


def check(
    read_data: Annotated[
        bool,
        typer.Option(
            "--read-data",
            help="Also read every stored object and hash it (slow: reads the whole store).",
        ),
    ] = False,
    rebuild_index: Annotated[
        bool,
        typer.Option(
            "--rebuild-index",
            help="Write index.db anew from the packs (for a damaged or lost index.db; run it "
            "while nothing logs to the store). The old file is kept as index.db.damaged-*.",
        ),
    ] = False,
    store: Annotated[
        str | None,
        typer.Option(
            "--store",
            help="Check a server's store folder instead of the embedded one, with the "
            "server's database (--database-url) to name affected versions.",
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
    """Check that every object the store's index lists is in its pack, whole (and with
    --read-data, that its bytes hash to its digest).

    Damaged objects are forgotten by the index and the versions that use them are named:
    log the data that produced them again (the same files) and the store is repaired. Exits
    with status 1 when something was damaged. Runs where the store is (a local store): not
    through a server (CAIRN_URL).
    """
    from cairn import config

    if config.url_from_env():
        output.fail(
            "check runs where the store is: unset CAIRN_URL and run `cairn check` on the "
            "server's machine (`cairn check --store FOLDER --database-url …`)"
        )
    if database_url and not store:
        output.fail("--database-url needs --store (embedded mode reads $CAIRN_DATABASE_URL)")
    from cairn.errors import CairnError
    from cairn.objects.check import check as run_check
    from cairn.objects.check import rebuild_index as run_rebuild
    from cairn.objects.packs.local import LocalPackStore
    from cairn.objects.store import is_bucket_url

    url = store or config.store_url() or str(config.cairn_dir() / "store")
    if is_bucket_url(url) or "://" in url.removeprefix("file://"):
        output.fail(
            f"cairn check works on a local store folder, not {url}: a bucket's packs are "
            "checked by the object storage service itself"
        )
    folder = Path(url.removeprefix("file://")).expanduser().absolute()
    if not (folder / "packs").is_dir():
        output.fail(f"no Cairn store at {folder}")
    say_enabled = not json_out and not output.quiet(quiet)
    rebuilt = None
    if rebuild_index:
        with output.status_line("check", say_enabled) as progress:
            try:
                rebuilt = run_rebuild(folder, read_data=read_data, progress=progress)
            except CairnError as exc:
                output.fail(str(exc))
    try:
        opened = LocalPackStore(folder)
    except CairnError as exc:
        output.fail(str(exc))
    registry: Registry | None = None
    try:
        if store:
            from cairn.service.sql import open_registry

            live: Registry = open_registry(database_url)
        else:
            from cairn.cli.common import backend

            live = backend().registry
        registry = live

        from cairn.service.liveness import live_roots

        def versions() -> list[tuple[str, list[str]]]:
            return [
                (root, [v.qualified_name for v in live.versions_with_digest(root)])
                for root in live_roots(live)
            ]

        with output.status_line("check", say_enabled) as progress:
            report = run_check(opened, versions, read_data=read_data, progress=progress)
    except CairnError as exc:
        output.fail(str(exc))
    finally:
        opened.close()
        if store and registry is not None:
            registry.close()
    if json_out:
        data = report.to_dict()
        if rebuilt is not None:
            data["rebuilt"] = rebuilt.to_dict()
        output.print_json(data)
    elif not output.quiet(quiet):
        if rebuilt is not None:
            notes = [f"{rebuilt.from_footers} by their footer"]
            if rebuilt.kept_rows:
                notes.append(f"{rebuilt.kept_rows} rows kept from the old index")
            if rebuilt.unreadable_packs:
                notes.append(f"{len(rebuilt.unreadable_packs)} packs could not be read")
            if rebuilt.dropped:
                notes.append(f"{rebuilt.dropped} damaged objects left out")
            kept = f" The old index is kept as {rebuilt.old_index}." if rebuilt.old_index else ""
            output.echo(
                f"Rebuilt {folder / 'index.db'}: {rebuilt.objects} objects from "
                f"{rebuilt.packs} packs ({'; '.join(notes)}).{kept}"
            )
        how = f", {output.human_size(report.bytes_read)} read and hashed" if read_data else ""
        output.echo(f"Checked {report.objects} objects in {report.packs} packs{how}.")
        if report.unindexed_packs:
            output.echo(
                f"{report.unindexed_packs} packs ({output.human_size(report.unindexed_bytes)}) "
                "are in no index (left by crashed writers): `cairn gc` reclaims them."
            )
        if report.ok:
            output.echo("No damage found.")
        else:
            gone = f" ({len(report.missing_packs)} packs missing)" if report.missing_packs else ""
            output.echo(f"{len(report.damaged)} damaged objects{gone} were forgotten by the index.")
            if report.affected_versions:
                output.echo("Versions that use them:")
                for name in report.affected_versions:
                    output.echo(f"  {name}")
            output.echo(
                "Log the data that produced them again (the same files): the objects are "
                "stored again and those versions can be downloaded again."
            )
    if not report.ok:
        raise typer.Exit(1)
