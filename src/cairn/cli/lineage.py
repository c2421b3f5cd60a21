"""`cairn lineage`: where a version came from and what used it, as an indented tree."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from cairn.cli import output
from cairn.cli.output import EXIT_USAGE, JsonOpt, ProjectOpt, fail

if TYPE_CHECKING:
    from cairn.core.records import LineageGraph, LineageNode
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


def render(graph: LineageGraph, direction: str) -> Any:
    """A Rich Tree of the graph, rooted at the version. A node reached twice is shown again
    but expanded once ("see above")."""
    from rich.tree import Tree

    nodes = {n.id: n for n in graph.nodes}
    root = nodes[graph.root]
    parents: dict[str, list[str]] = {}
    children: dict[str, list[str]] = {}
    for e in graph.edges:
        parents.setdefault(e.target, []).append(e.source)
        children.setdefault(e.source, []).append(e.target)

    def label(node: LineageNode) -> Any:
        from rich.text import Text

        if node.kind == "version":
            name = node.label if node.project == root.project else f"{node.project}/{node.label}"
            text = Text(name, style="bold cyan")
            if node.type:
                text.append(f" ({node.type})", style="dim")
        else:
            text = Text("run ", style="dim")
            text.append(node.label, style="green")
            run_id = node.id.partition(":")[2]
            text.append(f" [{run_id}]" + (f" {node.type}" if node.type else ""), style="dim")
        return text

    def grow(branch: Any, node_id: str, links: dict[str, list[str]], seen: set[str]) -> None:
        for next_id in sorted(links.get(node_id, []), key=_order(nodes)):
            node = nodes[next_id]
            if next_id in seen:
                sub = branch.add(label(node))
                if links.get(next_id):
                    sub.label.append(" (see above)", style="dim italic")
                continue
            seen.add(next_id)
            grow(branch.add(label(node)), next_id, links, seen)

    tree = Tree(label(root))
    if direction in ("up", "both"):
        up_branch = tree if direction == "up" else tree.add("upstream (what it came from)")
        grow(up_branch, root.id, parents, {root.id})
        if not parents.get(root.id):
            up_branch.add("(nothing: it was not logged by a run)")
    if direction in ("down", "both"):
        down_branch = tree if direction == "down" else tree.add("downstream (what used it)")
        grow(down_branch, root.id, children, {root.id})
        if not children.get(root.id):
            down_branch.add("(nothing has used it yet)")
    return tree


def _order(nodes: dict[str, LineageNode]) -> Any:
    def key(node_id: str) -> tuple[str, str]:
        node = nodes[node_id]
        return (node.kind, node.label)

    return key
