"""Pieces of the dashboard on their own: lineage grouping and layout, CSV previews, folder
pages, odd file names."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import httpx
from dashboard_helpers import LiveServer, open_backend

from cairn.core.digest import hash_bytes
from cairn.core.records import LineageEdge, LineageGraph, LineageNode
from cairn.dashboard import create_dashboard_app, lineage
from cairn.dashboard.browse import csv_preview, dir_page, kind_of, looks_binary, seek
from cairn.objects import tree
from cairn.sdk.backend import reset_backends


def fan_out_graph(runs: int) -> LineageGraph:
    """A dataset used by ``runs`` runs, each logging one model; one run in another project."""
    nodes = [LineageNode("version:1", "version", "data:v0", "p", "dataset")]
    edges = []
    for i in range(runs):
        project = "secret" if i == 0 else "p"
        nodes.append(LineageNode(f"run:r{i}", "run", f"run-{i}", project, "sweep", 1))
        nodes.append(LineageNode(f"version:{100 + i}", "version", f"m:v{i}", "p", "model", 2))
        edges.append(LineageEdge("version:1", f"run:r{i}"))
        edges.append(LineageEdge(f"run:r{i}", f"version:{100 + i}"))
    return LineageGraph("version:1", nodes, edges)


def draw(graph: LineageGraph, expand: set[str]) -> lineage.Picture:
    return lineage.picture(
        graph, expand=expand, can_read=lambda p: p != "secret", href=lambda n: "#" + n.id
    )


def test_fan_outs_collapse_into_nested_groups() -> None:
    graph = fan_out_graph(12)
    pic = draw(graph, set())
    kinds = sorted(n.kind for n in pic.nodes)
    # data:v0 -> 11 sweep runs -> 11 models; the run in an unreadable project ("no access",
    # its job type not shown) stays on its own, with its model
    assert kinds == ["group", "group", "hidden", "version", "version"]
    runs, models = pic.groups
    assert runs.label == "11 sweep runs" and models.label == "11 model versions"
    hidden = next(n for n in pic.nodes if n.kind == "hidden")
    assert {(e.source, e.target) for e in pic.edges} == {
        ("version:1", runs.id),
        ("version:1", hidden.id),
        (runs.id, models.id),
        (hidden.id, "version:100"),
    }
    # expanding the runs shows them; their models are no longer a fan-out of one node, so
    # they show too
    pic = draw(graph, {runs.id})
    assert pic.expanded == {runs.id: "11 sweep runs"}
    assert sum(n.kind == "run" for n in pic.nodes) == 11
    hidden_nodes = [n for n in pic.nodes if n.kind == "hidden"]
    assert len(hidden_nodes) == 1 and hidden_nodes[0].label == "no access"
    assert sum(n.kind == "version" for n in pic.nodes) == 13
    assert not pic.groups
    # every node is placed left to right by layer: dataset, runs, models
    x = {n.id: n.x for n in pic.nodes}
    assert x["version:1"] < x["run:r3"] < x["version:103"]
    assert all(e.path.startswith("M") for e in pic.edges)
    # an unknown group id in the URL changes nothing
    assert len(draw(graph, {"gdeadbeef00"}).nodes) == 5


def test_a_fan_out_of_many_types_groups_the_largest_until_the_rest_fits() -> None:
    nodes = [LineageNode("version:1", "version", "data:v0", "p", "dataset")]
    edges = []
    kinds = ["sweep"] * 10 + ["train"] * 3 + [f"kind{i}" for i in range(9)] + [None]
    for i, job in enumerate(kinds):
        nodes.append(LineageNode(f"run:r{i}", "run", f"run-{i}", "p", job, 1))
        edges.append(LineageEdge("version:1", f"run:r{i}"))
    pic = draw(LineageGraph("version:1", nodes, edges), set())
    labels = sorted(n.label for n in pic.nodes if n.kind == "group")
    # sweep first; 13 left is still too many: train; 10 left, none sharing a type: together
    assert labels == ["10 runs", "10 sweep runs", "3 train runs"]


def test_small_fan_out_is_not_grouped() -> None:
    pic = draw(fan_out_graph(8), set())
    assert not pic.groups and len(pic.nodes) == 17
    assert pic.width > 0 and pic.height > 0


def test_csv_preview_of_a_cut_file() -> None:
    data = b'a,b\n1,"two\nlines"\n3,4\n5,"cut he'
    p = csv_preview(data, complete=False, delimiter=",")
    assert p.header == ["a", "b"]
    assert p.rows == [["1", "two\nlines"], ["3", "4"]]
    assert p.truncated and p.numeric == [True, False]
    ragged = csv_preview(b"x,y,z\n1\n2,3\n", complete=True, delimiter=",")
    assert ragged.rows == [["1", "", ""], ["2", "3", ""]] and not ragged.truncated
    assert kind_of("a/B.TSV") == "tsv" and kind_of("x.bin") == "" and kind_of("Makefile") == "text"
    assert looks_binary(b"\x00\x01") and not looks_binary("héllo".encode()[:2] + b"llo")


def test_dir_pages_and_seek_over_page_indexes() -> None:
    entries = [tree.FileEntry(f"f{i:05d}", hash_bytes(b"%d" % i), 1) for i in range(9000)]
    built = tree.build(entries)
    load = built.objects.__getitem__
    assert isinstance(tree.parse(load(built.root)), tree.PageIndex)
    names = [f"f{i:05d}" for i in range(9000)]
    for offset in (0, 255, 4095, 4096, 8990):
        page = dir_page(built.root, load, offset, 20)
        assert [e.name for e in page.entries] == names[offset : offset + 20]
        assert page.total == 9000
    assert seek(built.root, "f07000", load) == 7000
    assert seek(built.root, "f07000x", load) == 7001
    assert seek(built.root, "a", load) == 0 and seek(built.root, "z", load) == 9000


def test_odd_file_names(cairn_env: Path) -> None:
    backend = open_backend(cairn_env)
    try:
        files = {"dir with space/ü #1?.txt": b"odd\n", "a%2Fb.txt": b"pct\n"}
        entries = []
        for path, data in files.items():
            backend.object_store.put(hash_bytes(data), data)
            entries.append(tree.FileEntry(path, hash_bytes(data), len(data)))
        built = tree.build(entries)
        for digest, body in built.objects.items():
            backend.object_store.put(digest, body)
        backend.object_store.sync()
        backend.registry.commit_version(
            "p", "odd", "dataset", digest=built.root, size=8, file_count=2
        )
        app = create_dashboard_app(
            SimpleNamespace(registry=backend.registry, object_store=backend.object_store)
        )
        # a real server: starlette's TestClient decodes paths twice ('%252F' -> '/')
        with LiveServer(app) as server, httpx.Client(base_url=server.url) as client:
            check_odd_names(client)
    finally:
        backend.close()
        reset_backends()


def check_odd_names(client: Any) -> None:
    root = client.get("/p/p/a/odd/v/v0/files")
    assert 'href="/p/p/a/odd/v/v0/files/dir%20with%20space"' in root.text
    assert 'href="/p/p/a/odd/v/v0/files/a%252Fb.txt"' in root.text
    folder = client.get("/p/p/a/odd/v/v0/files/dir%20with%20space")
    link = "/p/p/a/odd/v/v0/files/dir%20with%20space/%C3%BC%20%231%3F.txt"
    assert f'href="{link}"' in folder.text
    assert "odd" in client.get(link).text
    raw = client.get("/p/p/a/odd/v/v0/raw/dir%20with%20space/%C3%BC%20%231%3F.txt")
    assert raw.content == b"odd\n"
    assert client.get("/p/p/a/odd/v/v0/raw/a%252Fb.txt").content == b"pct\n"
    page = client.get("/p/p/a/odd/v/v0/files/dir%20with%20space").text
    assert "cairn artifact get p/odd:v0 --path &#39;dir with space&#39;" in page
