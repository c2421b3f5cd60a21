"""`cairn artifact ...`: find, read, compare and check versions."""

from __future__ import annotations

import itertools
import re
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer

from cairn.cli import edit, output
from cairn.cli.output import EXIT_INTEGRITY, EXIT_NOT_FOUND, JsonOpt, ProjectOpt, QuietOpt, fail
from cairn.cli.push import push
from cairn.cli.registry import AtOpt, SortOpt, WhereOpt

if TYPE_CHECKING:
    from cairn.core.records import ArtifactInfo, VersionInfo
    from cairn.sdk.artifact import Artifact

app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode="markdown",
    help="Find, download, compare, check and edit artifact versions.",
)

RefArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME[:VER]",
        help="[project/]name[:version], e.g. data, data:v3, data:best, demo/data:latest.",
        show_default=False,
    ),
]

app.command("put")(push)


@app.command("get")
def get(
    ref: RefArg,
    project: ProjectOpt = None,
    root: Annotated[
        Path | None,
        typer.Option(
            "--root",
            help="Folder to put the files in. Default: ./artifacts/NAME:vN.",
            show_default=False,
        ),
    ] = None,
    path: Annotated[
        str | None,
        typer.Option(
            "--path",
            metavar="PREFIX",
            help="Only this file, or the files under this folder.",
            show_default=False,
        ),
    ] = None,
    copy: Annotated[
        bool,
        typer.Option(
            "--copy",
            help="Write independent, writable copies (never links into the local store or cache).",
        ),
    ] = False,
    allow_missing_references: Annotated[
        bool,
        typer.Option(
            "--allow-missing-references",
            help="Download the rest when a reference's source is gone (a warning names it).",
        ),
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Replace files you modified, and symlinks or empty folders in the way.",
        ),
    ] = False,
    at: AtOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Download a version's files into a folder and print the folder.

    Files are verified against their digests. Files already in place are not fetched again.
    A file you modified (it differs from the version and from what Cairn last wrote there) is
    not replaced without --force: the command lists every such path and writes nothing.
    Nothing is written through a symlinked folder.
    """
    from cairn.cli.common import iter_files
    from cairn.objects.references import ReferenceSkippedWarning

    output.silence(quiet)
    art = _open(ref, project, at)
    count, size = art.file_count, art.size
    if path:
        count = size = 0
        for _path, n, _digest in iter_files(art, path):
            count += 1
            size += n
        if not count:
            fail(
                f"{art.qualified_name} has no file or folder {path!r}; list its files with "
                f"`cairn artifact files {art.qualified_name}`",
                EXIT_NOT_FOUND,
            )
    with warnings.catch_warnings(record=True) as skipped:
        warnings.simplefilter("always", ReferenceSkippedWarning)
        dest = art.download(
            root,
            path_prefix=path,
            copy=copy,
            allow_missing_references=allow_missing_references,
            overwrite=force,
        )
    for warning in skipped:
        output.hint(f"warning: {warning.message}")
    if output.quiet(quiet):
        output.echo(dest)
        return
    output.echo(
        f"Downloaded {art.qualified_name} ({count} files, {output.human_size(size)}) to {dest}"
    )


@app.command("ls")
def ls(
    project_arg: Annotated[
        str | None,
        typer.Argument(
            metavar="[PROJECT]",
            help="Project (default: --project, $CAIRN_PROJECT, 'default').",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = None,
    kind: Annotated[
        str | None, typer.Option("--type", "-t", help="Only artifacts of this type.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """List the artifacts of a project with their latest version."""
    from cairn.cli.common import backend
    from cairn.core import names

    proj = output.resolve_project(project_arg or project)
    if kind is not None:
        names.check_type(kind)
    registry = backend().registry
    infos: list[ArtifactInfo] = []
    offset = 0
    while True:
        page = registry.list_artifacts(proj, type=kind, limit=500, offset=offset)
        infos.extend(i for i in page if i.version_count)
        if len(page) < 500:
            break
        offset += 500
    if json_out:
        output.print_json(
            [
                {
                    **i.to_dict(),
                    "latest": f"v{i.latest_version}",
                    "qualified_name": f"{i.project}/{i.name}:v{i.latest_version}",
                }
                for i in infos
            ]
        )
        return
    if not infos:
        what = f" of type {kind!r}" if kind else ""
        output.echo(f"No artifacts{what} in project {proj!r}.")
        return
    t = output.table("NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "UPDATED")
    for i in infos:
        output.add_row(
            t,
            i.name,
            i.type,
            str(i.version_count),
            f"v{i.latest_version}",
            output.human_size(i.latest_size),
            output.when(i.updated_at),
        )
    t.print()


@app.command("versions")
def versions(
    name: Annotated[
        str,
        typer.Argument(metavar="NAME", help="[project/]name of the artifact.", show_default=False),
    ],
    project: ProjectOpt = None,
    where: WhereOpt = None,
    sort: SortOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the live versions of an artifact, newest first; --where and --sort filter and
    order them (e.g. --where 'metadata.acc > 0.9' --sort -metadata.acc)."""
    from cairn.cli.common import backend, split_name, version_json
    from cairn.cli.registry import filters_of, print_versions

    proj, art_name = split_name(name, project)
    registry = backend().registry
    infos: list[VersionInfo] = []
    if where or sort:
        while True:
            page = registry.search_versions(
                project=proj,
                name=art_name,
                filters=filters_of(where),
                order=sort,
                limit=500,
                offset=len(infos),
            )
            infos.extend(page)
            if len(page) < 500:
                break
        print_versions(infos, json_out)
        return
    while True:
        page = registry.list_versions(proj, art_name, limit=500, offset=len(infos))
        infos.extend(page)
        if len(page) < 500:
            break
    if json_out:
        output.print_json([version_json(i) for i in infos])
        return
    if not infos:
        output.echo(f"{proj}/{art_name} has no versions left (all were deleted).")
        return
    t = output.table("VERSION", "ALIASES", "TAGS", "FILES", "SIZE", "CREATED", "DIGEST")
    for i in infos:
        output.add_row(
            t,
            i.label,
            output.comma(i.aliases),
            output.comma(i.tags),
            str(i.file_count),
            output.human_size(i.size),
            output.when(i.created_at),
            output.short_digest(i.digest),
        )
    t.print()


@app.command("show")
def show(
    ref: RefArg,
    project: ProjectOpt = None,
    max_files: Annotated[int, typer.Option("--files", min=0, help="How many files to list.")] = 20,
    at: AtOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show a version: digest, size, aliases, tags, metadata, files, the run that logged it
    and the runs that used it."""
    from cairn.cli.common import iter_files, run_brief, run_label, version_info, version_json

    art = _open(ref, project, at)
    info = version_info(art)
    logged_by = art.logged_by()
    used_by = art.used_by()
    files = list(itertools.islice(iter_files(art), max_files))
    if json_out:
        data = version_json(info)
        data["logged_by"] = run_brief(logged_by.info) if logged_by else None
        data["used_by"] = [run_brief(r.info) for r in used_by]
        data["files"] = [{"path": p, "size": n, "digest": d} for p, n, d in files]
        output.print_json(data)
        return
    output.heading(f"{info.qualified_name}  ({info.type})")
    rows = [
        ("digest", info.digest),
        ("size", f"{output.human_size(info.size)} in {info.file_count} files"),
        ("created", output.when(info.created_at)),
        ("aliases", output.comma(info.aliases)),
        ("tags", output.comma(info.tags)),
        ("logged by", run_label(logged_by.info) if logged_by else "-"),
        ("used by", output.comma([run_label(r.info) for r in used_by])),
    ]
    if info.description:
        rows.append(("description", output.one_line(info.description)))
    output.print_key_values(rows)
    if info.metadata:
        output.heading("metadata")
        output.print_key_values(
            [(k, output.json_value(v)) for k, v in info.metadata.items()], indent="  "
        )
    output.heading(f"files ({info.file_count})")
    for path, size, _digest in files:
        output.echo(f"  {output.human_size(size):>9}  {path}")
    if info.file_count > len(files):
        output.echo(
            f"  ... and {info.file_count - len(files)} more: "
            f"cairn artifact files {info.qualified_name}"
        )


@app.command("files")
def files(
    ref: RefArg,
    prefix: Annotated[
        str | None,
        typer.Argument(metavar="[PREFIX]", help="Only this file or folder.", show_default=False),
    ] = None,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """List the files of a version with their sizes, in path order."""
    from cairn.cli.common import iter_files

    art = _open(ref, project)
    found = iter_files(art, prefix)
    if json_out:
        listed = [{"path": p, "size": n, "digest": d} for p, n, d in found]
        if prefix and not listed:
            _no_such_path(art.qualified_name, prefix)
        output.print_json(listed)
        return
    count = 0
    for path, size, _digest in found:
        output.echo(f"{output.human_size(size):>9}  {path}")
        count += 1
    if prefix and not count:
        _no_such_path(art.qualified_name, prefix)


def _no_such_path(qualified_name: str, prefix: str) -> NoReturn:
    fail(f"{qualified_name} has no file or folder {prefix!r}", EXIT_NOT_FOUND)


@app.command("diff")
def diff(
    old: Annotated[
        str, typer.Argument(metavar="NAME:VER", help="The older version.", show_default=False)
    ],
    new: Annotated[
        str, typer.Argument(metavar="NAME:VER", help="The newer version.", show_default=False)
    ],
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Compare two versions: files added, removed and modified (with sizes), and metadata
    changes."""
    from cairn.cli.common import backend
    from cairn.objects import tree

    a = _open(old, project)
    b = _open(new, project)
    load = backend().object_store.get
    changes = list(tree.diff(a.digest, b.digest, load))
    file_rows = [
        {
            "path": c.path,
            "change": c.kind,
            "old_size": c.old.size if c.old else None,
            "new_size": c.new.size if c.new else None,
            "old_digest": c.old.digest if c.old else None,
            "new_digest": c.new.digest if c.new else None,
        }
        for c in changes
    ]
    meta_rows = _dict_diff(a.metadata, b.metadata)
    counts = {k: sum(1 for c in changes if c.kind == k) for k in ("added", "removed", "modified")}
    if json_out:
        data: dict[str, Any] = {
            "old": a.qualified_name,
            "new": b.qualified_name,
            "same_files": a.digest == b.digest,
            "files": file_rows,
            "counts": counts,
            "metadata": meta_rows,
        }
        if a.description != b.description:
            data["description"] = {"old": a.description, "new": b.description}
        output.print_json(data)
        return
    output.heading(f"{a.qualified_name} -> {b.qualified_name}")
    if not changes:
        output.echo("files: identical")
    else:
        output.echo(
            f"files: {counts['added']} added, {counts['removed']} removed, "
            f"{counts['modified']} modified"
        )
        width = max(len(c.path) for c in changes)
        for c in changes:
            old_size = output.human_size(c.old.size) if c.old else ""
            new_size = output.human_size(c.new.size) if c.new else ""
            if c.old and c.new and old_size == new_size and c.old.size != c.new.size:
                old_size, new_size = f"{c.old.size:,} B", f"{c.new.size:,} B"
            if c.kind == "added":
                mark, size = "+", new_size
            elif c.kind == "removed":
                mark, size = "-", old_size
            else:
                mark, size = "~", f"{old_size} -> {new_size}"
            output.echo(f"  {mark} {c.kind:<8}  {c.path:<{width}}  {size}")
    if not meta_rows:
        output.echo("metadata: identical")
    else:
        output.echo("metadata:")
        for m in meta_rows:
            if m["change"] == "added":
                output.echo(f"  + {m['key']}: {output.json_value(m['new'])}")
            elif m["change"] == "removed":
                output.echo(f"  - {m['key']}: {output.json_value(m['old'])}")
            else:
                output.echo(
                    f"  ~ {m['key']}: {output.json_value(m['old'])} -> "
                    f"{output.json_value(m['new'])}"
                )
    if a.description != b.description:
        output.echo("description: changed")


def _dict_diff(old: dict[str, Any], new: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for key in sorted(old.keys() | new.keys()):
        if key not in old:
            rows.append({"key": key, "change": "added", "old": None, "new": new[key]})
        elif key not in new:
            rows.append({"key": key, "change": "removed", "old": old[key], "new": None})
        elif old[key] != new[key]:
            rows.append({"key": key, "change": "changed", "old": old[key], "new": new[key]})
    return rows


@app.command("verify")
def verify(
    ref: RefArg,
    path: Annotated[
        Path,
        typer.Argument(
            help="The folder to check (e.g. where `cairn artifact get` put the files).",
            exists=True,
            file_okay=False,
            show_default=False,
        ),
    ],
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Check that a folder holds exactly a version's files, with the right content.

    Exit code 4 when it does not; every difference is listed.
    """
    from cairn.errors import IntegrityError

    art = _open(ref, project)
    qn = art.qualified_name
    try:
        art.verify(path)
    except IntegrityError as exc:
        # the SDK lists the differences one per indented line (the first 20, then "... and
        # N more"); it has no structured list of them
        lines = str(exc).splitlines()
        problems = [ln.strip() for ln in lines[1:] if ln.startswith("  ")] or lines
        total = len(problems)
        more = re.fullmatch(r"\.\.\. and (\d+) more", problems[-1])
        if more:
            total += int(more.group(1)) - 1
        if not output.quiet(quiet):
            for p in problems:
                output.echo(f"  {p}")
        changed = any(p.startswith(("size differs", "content differs")) for p in problems)
        force = " --force" if changed else ""  # changed files are only replaced when asked
        fail(
            f"{path} does not match {qn} ({total} difference"
            f"{'s' if total != 1 else ''}); restore it with "
            f"`cairn artifact get {qn} --root {path}{force}`",
            EXIT_INTEGRITY,
        )
    if not output.quiet(quiet):
        output.echo(
            f"OK: {path} matches {qn} ({art.file_count} files, {output.human_size(art.size)})"
        )


@app.command("history")
def history(ref: RefArg, project: ProjectOpt = None, json_out: JsonOpt = False) -> None:
    """Show every change made to a version: creation, aliases, tags, metadata, description,
    deletion."""
    art = _open(ref, project)
    entries = art.history()
    if json_out:
        output.print_json([e.to_dict() for e in entries])
        return
    output.heading(f"History of {art.qualified_name}")
    t = output.table("WHEN", "BY", "CHANGE")
    for e in entries:
        by = e.user or (f"run {e.run_id}" if e.run_id else "-")
        t.add_row(output.when(e.at), by, describe_change(e.field, e.old, e.new))
    t.print()


def describe_change(field: str, old: Any, new: Any) -> str:
    """One history entry in words."""
    if field == "created" and isinstance(new, dict):
        extra = []
        if new.get("aliases"):
            extra.append("aliases " + ", ".join(new["aliases"]))
        if new.get("tags"):
            extra.append("tags " + ", ".join(new["tags"]))
        digest = output.short_digest(str(new.get("digest", "")))
        more = f"; {'; '.join(extra)}" if extra else ""
        return f"created v{new.get('version')} ({digest}{more})"
    if field == "deleted":
        return "deleted"
    if field == "relogged" and isinstance(new, dict):
        return f"re-logged by run {new.get('run')} (identical content: no new version)"
    if field in ("aliases", "tags") and isinstance(old, list) and isinstance(new, list):
        added = [x for x in new if x not in old]
        removed = [x for x in old if x not in new]
        parts = [f"+{x}" for x in added] + [f"-{x}" for x in removed]
        return f"{field}: {' '.join(parts) or 'unchanged'} (now: {output.comma(new)})"
    if field == "metadata" and isinstance(old, dict) and isinstance(new, dict):
        parts = []
        for row in _dict_diff(old, new):
            key = row["key"]
            if row["change"] == "added":
                parts.append(f"+{key}={output.json_value(row['new'])}")
            elif row["change"] == "removed":
                parts.append(f"-{key}")
            else:
                parts.append(
                    f"{key}: {output.json_value(row['old'])} -> {output.json_value(row['new'])}"
                )
        return "metadata: " + (", ".join(parts) or "unchanged")
    if field == "description":
        return f"description: {output.json_value(new)}"
    if field == "ttl":  # retention: seconds, 0 never, None inherits the default
        from cairn.service.retention import format_duration

        def ttl(v: Any) -> str:
            return "inherit" if v is None else format_duration(v)

        return f"ttl: {ttl(old)} -> {ttl(new)}"
    if field in ("expired", "retention") and isinstance(new, dict):
        return f"{field} ({new.get('rule')})"
    return f"{field}: {output.json_value(old)} -> {output.json_value(new)}"


def _open(ref: str, project: str | None, at: str | None = None) -> Artifact:
    from cairn.cli.common import open_version

    return open_version(ref, project, at=at)


edit.register(app)
