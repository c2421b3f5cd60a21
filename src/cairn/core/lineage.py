"""The lineage graph of a version as a picture: runs and versions, left to right.

1. Large fan-outs are collapsed: when more than FAN_OUT nodes of one kind hang off one node on
   the same side (12 runs that used a dataset), they become one group node, "12 runs", whose
   members' other edges it takes over; this repeats, so the 12 models those runs logged become
   a second group. A group is expanded by naming its id in the page's ``expand`` parameter.
2. Nodes are laid out in layers by grandalf's Sugiyama layout (the "dot" algorithm: layers,
   then crossing reduction, then Brandes-Köpf coordinates), turned to run left to right.
3. Edges are drawn as curves through the layout's bend points.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field

from grandalf.graphs import Edge, Graph, Vertex  # type: ignore[import-untyped]
from grandalf.layouts import SugiyamaLayout  # type: ignore[import-untyped]

from cairn.core.records import LineageGraph

FAN_OUT = 8  # more neighbours than this of one kind on one side are grouped
MAX_NODES = 400  # a graph larger than this (after grouping) is not drawn
NODE_W = 176
NODE_H = 46
LAYER_GAP = 56  # horizontal space between layers
ROW_GAP = 18  # vertical space between nodes of a layer
MARGIN = 16


@dataclass
class GNode:
    id: str
    kind: str  # run | version | group | hidden
    label: str
    sub: str  # artifact type / job type / "12 runs"
    project: str = ""
    ref: str = ""  # run id, or version id
    member_kind: str = ""  # for groups: run | version
    members: list[str] = field(default_factory=list)
    root: bool = False
    x: float = 0.0
    y: float = 0.0
    href: str = ""
    css: str = ""


@dataclass
class GEdge:
    source: str
    target: str
    path: str = ""


@dataclass
class Picture:
    nodes: list[GNode]
    edges: list[GEdge]
    width: float
    height: float
    groups: list[GNode]  # the collapsed groups (to expand)
    expanded: dict[str, str]  # the group ids the page asked to expand that still exist: labels
    too_big: int = 0  # when set, the graph had this many nodes and was not drawn


def group_id(anchor: str, side: str, kind: str) -> str:
    """A short stable id for the group of ``kind`` nodes on ``side`` of ``anchor``."""
    return "g" + hashlib.sha1(f"{anchor}|{side}|{kind}".encode()).hexdigest()[:10]


class _Graph:
    def __init__(self) -> None:
        self.nodes: dict[str, GNode] = {}
        self.succ: dict[str, set[str]] = {}
        self.pred: dict[str, set[str]] = {}

    def add(self, node: GNode) -> None:
        self.nodes[node.id] = node
        self.succ.setdefault(node.id, set())
        self.pred.setdefault(node.id, set())

    def link(self, a: str, b: str) -> None:
        if a != b:
            self.succ[a].add(b)
            self.pred[b].add(a)

    def remove(self, node_id: str) -> None:
        for b in self.succ.pop(node_id):
            self.pred[b].discard(node_id)
        for a in self.pred.pop(node_id):
            self.succ[a].discard(node_id)
        del self.nodes[node_id]


def _order(g: _Graph, root: str) -> list[str]:
    """Nodes breadth-first from the root (either direction), then the rest by id: the order
    groups are looked for in, so the grouping does not depend on dict order."""
    seen = {root}
    queue = [root]
    for node in queue:
        for nb in sorted(g.succ[node] | g.pred[node]):
            if nb not in seen:
                seen.add(nb)
                queue.append(nb)
    return queue + sorted(set(g.nodes) - seen)


def collapse(
    g: _Graph, root: str, expand: set[str], fan_out: int = FAN_OUT
) -> tuple[list[GNode], dict[str, str]]:
    """Group every fan-out larger than ``fan_out`` (unless its id is in ``expand``): by job
    type (runs) or artifact type (versions) where that makes groups of two or more ("12 sweep
    runs"), the rest together ("9 runs"). Returns the groups made, in the order made, and the
    ids of ``expand`` left expanded with their labels."""
    groups: list[GNode] = []
    kept: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for anchor in _order(g, root):
            if anchor not in g.nodes:
                continue
            for side in ("out", "in"):
                neighbours = g.succ[anchor] if side == "out" else g.pred[anchor]
                for kind in ("run", "version"):
                    members = sorted(
                        n
                        for n in neighbours
                        if n != root and _kind(g.nodes[n]) == kind and g.nodes[n].kind != "group"
                    )
                    if len(members) <= fan_out:
                        continue
                    for gid, label, part in _partition(g, anchor, side, kind, members):
                        if gid in expand:
                            kept[gid] = label
                            continue
                        _make_group(g, gid, anchor, side, kind, part, label)
                        groups.append(g.nodes[gid])
                        changed = True
                    if changed:
                        break
                if changed:
                    break
            if changed:
                break
    return groups, dict(sorted(kept.items()))


def _partition(
    g: _Graph, anchor: str, side: str, kind: str, members: list[str]
) -> list[tuple[str, str, list[str]]]:
    """(group id, label, members) of the next group to make of a fan-out: its largest job or
    artifact type with two or more members (the caller groups again while the fan-out is still
    too large, so small types stay in view); when no type has two, all of them together."""
    noun = "runs" if kind == "run" else "versions"
    by_type: dict[str, list[str]] = {}
    for m in members:
        node = g.nodes[m]
        typed = node.kind != "hidden" and not (kind == "run" and node.sub == "run")
        by_type.setdefault(node.sub if typed else "", []).append(m)  # "run": no job type
    several = [(t, ms) for t, ms in by_type.items() if len(ms) >= 2]
    if several:
        t, ms = max(several, key=lambda item: (len(item[1]), item[0]))
        return [
            (group_id(anchor, side, f"{kind}:{t}"), f"{len(ms)} {t + ' ' if t else ''}{noun}", ms)
        ]
    return [(group_id(anchor, side, kind), f"{len(members)} {noun}", members)]


def _kind(node: GNode) -> str:
    if node.kind == "hidden":
        return node.member_kind
    return node.kind


def _make_group(
    g: _Graph, gid: str, anchor: str, side: str, kind: str, members: list[str], label: str
) -> None:
    g.add(
        GNode(
            id=gid,
            kind="group",
            label=label,
            sub="click to expand",
            member_kind=kind,
            members=members,
        )
    )
    if side == "out":
        g.link(anchor, gid)
    else:
        g.link(gid, anchor)
    member_set = set(members)
    for m in members:
        for b in g.succ[m]:
            if b not in member_set and b != anchor:
                g.link(gid, b)
        for a in g.pred[m]:
            if a not in member_set and a != anchor:
                g.link(a, gid)
    for m in members:
        g.remove(m)


class _View:
    def __init__(self, w: float, h: float) -> None:
        self.w = w
        self.h = h
        self.xy: tuple[float, float] = (0.0, 0.0)


class _EdgeView:
    def __init__(self) -> None:
        self.points: list[tuple[float, float]] = []

    def setpath(self, points: list[tuple[float, float]]) -> None:
        self.points = list(points)


def _curve(points: list[tuple[float, float]]) -> str:
    """A smooth path through points laid out left to right, leaving and entering each point
    horizontally."""
    (x0, y0), rest = points[0], points[1:]
    out = [f"M{x0:.1f},{y0:.1f}"]
    px, py = x0, y0
    for x, y in rest:
        mid = (px + x) / 2
        out.append(f"C{mid:.1f},{py:.1f} {mid:.1f},{y:.1f} {x:.1f},{y:.1f}")
        px, py = x, y
    return " ".join(out)


def layout(nodes: list[GNode], edges: list[tuple[str, str]]) -> tuple[list[GEdge], float, float]:
    """Place the nodes (sets x, y: the top-left corner) and route the edges; returns the
    edges and the picture's size."""
    vertices = {}
    for n in nodes:
        v = Vertex(n.id)
        # grandalf stacks layers vertically: lay out the transposed picture, then swap axes
        v.view = _View(NODE_H, NODE_W)
        vertices[n.id] = v
    gedges = []
    for a, b in edges:
        e = Edge(vertices[a], vertices[b])
        e.view = _EdgeView()
        gedges.append((a, b, e))
    graph = Graph(list(vertices.values()), [e for _, _, e in gedges])
    offset = 0.0  # components are stacked top to bottom
    for component in graph.C:
        if len(component.sV) == 1:
            (v,) = component.sV
            v.view.xy = (NODE_H / 2, NODE_W / 2)
        else:
            sug = SugiyamaLayout(component)
            sug.xspace = ROW_GAP
            sug.yspace = LAYER_GAP
            sug.init_all()
            sug.draw()
        low = min(v.view.xy[0] - NODE_H / 2 for v in component.sV)
        high = max(v.view.xy[0] + NODE_H / 2 for v in component.sV)
        shift = offset - low
        for v in component.sV:
            gx, gy = v.view.xy
            v.view.xy = (gx + shift, gy)
        for e in component.sE:
            if e.view.points:
                e.view.points = [(gx + shift, gy) for gx, gy in e.view.points]
        offset += high - low + ROW_GAP * 2
    by_id = {n.id: n for n in nodes}
    for node_id, v in vertices.items():
        gx, gy = v.view.xy
        by_id[node_id].x = gy - NODE_W / 2 + MARGIN
        by_id[node_id].y = gx - NODE_H / 2 + MARGIN
    routed = []
    for a, b, e in gedges:
        pts = [(gy + MARGIN, gx + MARGIN) for gx, gy in e.view.points] or [
            (by_id[a].x + NODE_W / 2, by_id[a].y + NODE_H / 2),
            (by_id[b].x + NODE_W / 2, by_id[b].y + NODE_H / 2),
        ]
        # leave from the right side of the source, enter the left side of the target
        src, dst = by_id[a], by_id[b]
        forward = src.x <= dst.x
        start = (src.x + (NODE_W if forward else 0), src.y + NODE_H / 2)
        end = (dst.x + (0 if forward else NODE_W), dst.y + NODE_H / 2)
        routed.append(GEdge(a, b, _curve([start, *pts[1:-1], end])))
    width = max((n.x + NODE_W for n in nodes), default=0) + MARGIN
    height = max((n.y + NODE_H for n in nodes), default=0) + MARGIN
    return routed, width, height


def picture(
    graph: LineageGraph,
    *,
    expand: set[str],
    can_read: Callable[[str], bool],
    href: Callable[[GNode], str],
    fan_out: int = FAN_OUT,
) -> Picture:
    g = _Graph()
    for n in graph.nodes:
        ref = n.id.split(":", 1)[1]
        if not can_read(n.project):
            node = GNode(
                n.id, "hidden", "no access", n.project, project=n.project, member_kind=n.kind
            )
        elif n.kind == "run":
            node = GNode(n.id, "run", n.label, n.type or "run", project=n.project, ref=ref)
        else:
            node = GNode(n.id, "version", n.label, n.type or "", project=n.project, ref=ref)
        node.root = n.id == graph.root
        g.add(node)
    for e in graph.edges:
        if e.source in g.nodes and e.target in g.nodes:
            g.link(e.source, e.target)
    groups, expanded = collapse(g, graph.root, expand, fan_out)
    nodes = [g.nodes[i] for i in _order(g, graph.root)]
    if len(nodes) > MAX_NODES:
        return Picture([], [], 0, 0, groups, expanded, too_big=len(nodes))
    for node in nodes:
        node.href = href(node)
        node.css = _css(node)
    edges = sorted((a, b) for a in g.succ for b in g.succ[a])
    routed, width, height = layout(nodes, edges)
    return Picture(nodes, routed, width, height, groups, expanded)


def _css(node: GNode) -> str:
    if node.kind == "version":
        kind = node.sub if node.sub in ("dataset", "model") else "other"
        return f"node version type-{kind}"
    return f"node {node.kind}"


# the dashboard's stylesheet for the picture (static/cairn.css), with its colours resolved, for
# places that have no stylesheet of Cairn's (a notebook); scoped to the svg's class
SVG_STYLE = """
svg.cairn-lineage { display: block; max-width: 100%; height: auto; font-family: system-ui,
  -apple-system, 'Segoe UI', sans-serif; }
svg.cairn-lineage .edge { fill: none; stroke: #a6b0bf; stroke-width: 1.5; }
svg.cairn-lineage .arrowhead { fill: #a6b0bf; }
svg.cairn-lineage .node rect { fill: #fff; stroke-width: 2; }
svg.cairn-lineage .node .label { font-size: 13px; font-weight: 600; fill: #1d2430; }
svg.cairn-lineage .node .sub { font-size: 11px; fill: #667085; }
svg.cairn-lineage .node.run rect { stroke: #2f6fde; fill: #f1f6fe; }
svg.cairn-lineage .node.version.type-dataset rect { stroke: #1f9d6b; fill: #eefaf4; }
svg.cairn-lineage .node.version.type-model rect { stroke: #8a4fd8; fill: #f6f0fd; }
svg.cairn-lineage .node.version.type-other rect { stroke: #d9822b; fill: #fdf5ec; }
svg.cairn-lineage .node.group rect { stroke: #8a94a6; stroke-dasharray: 5 3; fill: #f7f8fa; }
svg.cairn-lineage .node.hidden rect { stroke: #c5ccd6; fill: #f3f4f6; }
svg.cairn-lineage .node.root rect { stroke-width: 3.5; }
"""


def _truncate(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def to_svg(pic: Picture, *, element_id: str = "lineage-graph") -> str:
    """The picture as a standalone SVG element, with the markup of the dashboard's lineage
    page (templates/version_lineage.html) and its own <style>, for notebooks."""
    from html import escape

    def a(value: object) -> str:
        return escape(str(value), quote=True)

    w, h = int(pic.width), int(pic.height)
    arrow = f"{element_id}-arrow"
    out = [
        f'<svg class="cairn-lineage" id="{a(element_id)}" xmlns="http://www.w3.org/2000/svg" '
        f'width="{w}" height="{h}" viewBox="0 0 {w} {h}" role="img" aria-label="Lineage graph">',
        f"<style>{SVG_STYLE}</style>",
        f'<defs><marker id="{a(arrow)}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" '
        'markerHeight="7" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        'class="arrowhead"/></marker></defs>',
        '<g class="edges">',
    ]
    for e in pic.edges:
        out.append(
            f'<path d="{a(e.path)}" class="edge" marker-end="url(#{a(arrow)})" '
            f'data-source="{a(e.source)}" data-target="{a(e.target)}"/>'
        )
    out.append('</g><g class="nodes">')
    for n in pic.nodes:
        if n.kind == "group":
            title = f"{n.label}: {n.sub}"
        elif n.kind == "hidden":
            title = "in a project you cannot read"
        else:
            title = f"{n.project}/{n.label} ({n.sub})"
        css = n.css or _css(n)
        if n.href:
            out.append(f'<a href="{a(n.href)}" class="node-link">')
        out.append(
            f'<g class="{a(css)}{" root" if n.root else ""}" data-node="{a(n.id)}" '
            f'data-kind="{a(n.kind)}" transform="translate({n.x:.1f},{n.y:.1f})">'
            f"<title>{escape(title)}</title>"
            f'<rect width="{NODE_W}" height="{NODE_H}" rx="{22 if n.kind == "run" else 6}"/>'
            f'<text x="12" y="19" class="label">{escape(_truncate(n.label, 24))}</text>'
            f'<text x="12" y="35" class="sub">{escape(_truncate(n.sub, 26))}</text></g>'
        )
        if n.href:
            out.append("</a>")
    out.append("</g></svg>")
    return "".join(out)


def graph_html(graph: LineageGraph) -> str:
    """A lineage graph as a card for Jupyter (``LineageGraph._repr_html_``): the dashboard's
    picture as inline SVG."""
    card = (
        "font-family:system-ui,-apple-system,'Segoe UI',sans-serif;font-size:13px;"
        "border:1px solid #d0d5dd;border-radius:8px;padding:10px 14px;background:#fff"
    )
    pic = picture(graph, expand=set(), can_read=lambda _p: True, href=lambda _n: "")
    if pic.too_big:
        return (
            f'<div style="{card}">The lineage graph has {pic.too_big} nodes even with large '
            "fan-outs grouped: ask for a smaller depth or one direction.</div>"
        )
    if not pic.nodes:
        return f'<div style="{card}">An empty lineage graph.</div>'
    legend = (
        "<div style='color:#667085;font-size:12px;margin-top:4px'>Data flows left to right: a "
        "version → the runs that used it → the versions they logged.</div>"
    )
    digest = hashlib.blake2b(graph.root.encode(), digest_size=6).hexdigest()
    svg = to_svg(pic, element_id=f"cairn-lineage-{digest}")
    return f'<div class="cairn-card cairn-lineage-card" style="{card}">{svg}{legend}</div>'
