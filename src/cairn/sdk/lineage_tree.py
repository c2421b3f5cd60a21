"""A version's lineage as an indented tree (Rich), for the CLI and plain-text reports."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cairn.core.records import LineageGraph, LineageNode


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


def as_text(graph: LineageGraph, direction: str, width: int = 100) -> str:
    """The tree as plain text (no colours), e.g. for a script's printed report."""
    from rich.console import Console

    buffer = io.StringIO()
    Console(file=buffer, width=width, color_system=None, highlight=False).print(
        render(graph, direction)
    )
    return buffer.getvalue().rstrip("\n")
