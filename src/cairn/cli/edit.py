"""`cairn artifact alias|tag|rm`: edit what can change on a logged version."""

from __future__ import annotations

from typing import Annotated

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_ERROR, EXIT_NOT_FOUND, ProjectOpt, QuietOpt, fail

VersionArg = Annotated[
    str,
    typer.Argument(
        metavar="NAME:VER",
        help="[project/]name:version or name:alias of the version.",
        show_default=False,
    ),
]

alias_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Add or remove an alias of a version."
)
tag_app = typer.Typer(
    no_args_is_help=True, rich_markup_mode="markdown", help="Add or remove a tag of a version."
)


@alias_app.command("add")
def alias_add(
    ref: VersionArg,
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. best, production.")],
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Point an alias at a version. An alias names one version of an artifact, so it moves
    here from the version that had it."""
    from cairn.cli.common import backend, open_version
    from cairn.core import names

    art = open_version(ref, project, explicit=True)
    names.check_alias(alias)
    qn = art.qualified_name
    if alias in art.aliases:
        _say(quiet, f"{qn} already has alias {alias!r}.")
        return
    _, moved_from = backend().registry.add_alias(art.id, alias)  # atomic: no edit is lost
    moved = f" (moved from v{moved_from})" if moved_from is not None else ""
    _say(quiet, f"{qn} now has alias {alias!r}{moved}.")


@alias_app.command("rm")
def alias_rm(
    ref: VersionArg,
    alias: Annotated[str, typer.Argument(metavar="ALIAS", help="The alias to remove.")],
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Remove an alias from a version."""
    from cairn.cli.common import backend, open_version, user_aliases
    from cairn.core import names
    from cairn.errors import NotFoundError

    art = open_version(ref, project, explicit=True)
    names.check_alias(alias)
    qn = art.qualified_name
    try:
        backend().registry.remove_alias(art.id, alias)  # atomic: no edit is lost
    except NotFoundError:
        fail(
            f"{qn} has no alias {alias!r}; its aliases: {output.comma(user_aliases(art.aliases))}",
            EXIT_NOT_FOUND,
        )
    _say(quiet, f"Removed alias {alias!r} from {qn}.")


@tag_app.command("add")
def tag_add(
    ref: VersionArg,
    tag: Annotated[str, typer.Argument(metavar="TAG", help="The tag to add.")],
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Add a tag to a version (a version can have many tags; many versions can share one)."""
    from cairn.cli.common import backend, open_version
    from cairn.core import names

    art = open_version(ref, project, explicit=True)
    names.check_tag(tag)
    qn = art.qualified_name
    if tag in art.tags:
        _say(quiet, f"{qn} already has tag {tag!r}.")
        return
    backend().registry.add_tag(art.id, tag)  # atomic: no edit is lost
    _say(quiet, f"Tagged {qn} with {tag!r}.")


@tag_app.command("rm")
def tag_rm(
    ref: VersionArg,
    tag: Annotated[str, typer.Argument(metavar="TAG", help="The tag to remove.")],
    project: ProjectOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Remove a tag from a version."""
    from cairn.cli.common import backend, open_version
    from cairn.core import names
    from cairn.errors import NotFoundError

    art = open_version(ref, project, explicit=True)
    names.check_tag(tag)
    qn = art.qualified_name
    try:
        backend().registry.remove_tag(art.id, tag)  # atomic: no edit is lost
    except NotFoundError:
        fail(f"{qn} has no tag {tag!r}; its tags: {output.comma(art.tags)}", EXIT_NOT_FOUND)
    _say(quiet, f"Removed tag {tag!r} from {qn}.")


def rm(
    ref: VersionArg,
    project: ProjectOpt = None,
    force: Annotated[
        bool, typer.Option("--force", "-f", help="Delete it even if it has aliases (dropped).")
    ] = False,
    quiet: QuietOpt = False,
) -> None:
    """Delete a version. Its number is never reused; its history stays.

    A version with aliases is refused unless --force (so a name like 'production' never
    silently stops resolving).
    """
    from cairn.cli.common import open_version, user_aliases

    art = open_version(ref, project, explicit=True)
    qn = art.qualified_name
    aliases = user_aliases(art.aliases)
    if aliases and not force:
        fail(
            f"{qn} has aliases {', '.join(aliases)}: move or remove them first "
            f"(cairn artifact alias rm {qn} ALIAS), or pass --force to delete it and drop them",
            EXIT_ERROR,
        )
    art.delete(delete_aliases=force)
    dropped = f" and dropped its aliases {', '.join(aliases)}" if aliases else ""
    _say(quiet, f"Deleted {qn}{dropped}.")


def _say(quiet: bool, message: str) -> None:
    if not output.quiet(quiet):
        output.echo(message)


def register(app: typer.Typer) -> None:
    app.add_typer(alias_app, name="alias")
    app.add_typer(tag_app, name="tag")
    app.command("rm")(rm)
