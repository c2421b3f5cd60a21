"""`cairn lineage`: where a version came from and what used it, as an indented tree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_USAGE, JsonOpt, ProjectOpt, fail
from cairn.sdk.lineage_tree import render

if TYPE_CHECKING:
    from cairn.service.registry import Direction


def lineage(
    ref: Annotated[
        str,
        typer.Argument(
            metavar="NAME[:VER]",
            help="[project/]name[:version] of the version.",
            show_default=False,
        ),
    ],
    up: Annotated[
        bool, typer.Option("--up", help="Only upstream: the runs and versions it came from.")
    ] = False,
    down: Annotated[
        bool, typer.Option("--down", help="Only downstream: the runs that used it and so on.")
    ] = False,
    depth: Annotated[
        int | None,
        typer.Option(
            "--depth",
            min=1,
            help="At most this many edges from the version. Default: all.",
            show_default=False,
        ),
    ] = None,
    project: ProjectOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Show the lineage graph of a version as a tree.

    Upstream, a version's parent is the run that logged it and a run's parents are the
    versions it used; downstream the other way round. Both directions by default.
    """
    from cairn.cli.common import open_version

    if up and down:
        fail("--up and --down exclude each other; give neither to see both", EXIT_USAGE)
    direction: Direction = "up" if up else "down" if down else "both"
    art = open_version(ref, project)
    graph = art.lineage(direction=direction, depth=depth)
    if json_out:
        output.print_json(graph.to_dict())
        return
    output.console().print(render(graph, direction))
