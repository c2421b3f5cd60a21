"""Lineage: input/output edges between runs and versions, and graph walks."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from cairn.core.records import LineageGraph, RunInfo, VersionInfo
from cairn.errors import InvalidInputError, RunNotFoundError
from cairn.service.sql import SqlRegistry

Digest = Callable[[str], str]


def log(
    reg: SqlRegistry, name: str, digest: str, run_id: str | None, type: str = "dataset"
) -> VersionInfo:
    info, _ = reg.commit_version(
        "proj", name, type, digest=digest, size=1, file_count=1, run_id=run_id
    )
    return info


def shape(graph: LineageGraph) -> tuple[dict[str, int], set[tuple[str, str]]]:
    return (
        {n.id: n.depth for n in graph.nodes},
        {(e.source, e.target) for e in graph.edges},
    )


@dataclass
class Pipeline:
    runs: dict[str, RunInfo]
    versions: dict[str, VersionInfo]

    def node(self, name: str) -> str:
        if name in self.runs:
            return f"run:{self.runs[name].id}"
        return f"version:{self.versions[name].id}"

    def vid(self, name: str) -> int:
        return self.versions[name].id


@pytest.fixture
def pipeline(registry: SqlRegistry, digest: Digest) -> Pipeline:
    """raw -> [prep] -> clean -> [train] -> model -> [eval] -> report, and labels -> [train]."""
    runs = {
        name: registry.create_run("proj", name=name, job_type=job)
        for name, job in [("prep", "preprocess"), ("train", "train"), ("eval", "eval")]
    }
    v = {"raw": log(registry, "raw", digest("raw"), None)}
    v["labels"] = log(registry, "labels", digest("labels"), None)
    registry.record_use(runs["prep"].id, v["raw"].id)
    v["clean"] = log(registry, "clean", digest("clean"), runs["prep"].id)
    registry.record_use(runs["train"].id, v["clean"].id)
    registry.record_use(runs["train"].id, v["labels"].id)
    v["model"] = log(registry, "model", digest("model"), runs["train"].id, type="model")
    registry.record_use(runs["eval"].id, v["model"].id)
    v["report"] = log(registry, "report", digest("report"), runs["eval"].id, type="report")
    return Pipeline(runs, v)


def test_edges_are_queryable_both_ways(registry: SqlRegistry, pipeline: Pipeline) -> None:
    train = pipeline.runs["train"].id
    clean, labels, model = (pipeline.vid(n) for n in ("clean", "labels", "model"))
    assert [v.id for v in registry.run_inputs(train)] == [clean, labels]
    assert [v.id for v in registry.run_outputs(train)] == [model]
    assert [r.id for r in registry.used_by(clean)] == [train]
    logged = registry.logged_by(model)
    assert logged is not None and logged.name == "train" and logged.job_type == "train"
    assert registry.logged_by(pipeline.vid("raw")) is None
    assert registry.used_by(pipeline.vid("report")) == []


def test_record_use_is_idempotent_and_checks_ids(registry: SqlRegistry, pipeline: Pipeline) -> None:
    train, clean = pipeline.runs["train"].id, pipeline.vid("clean")
    registry.record_use(train, clean)
    registry.record_use(train, clean)
    assert [v.id for v in registry.run_inputs(train)].count(clean) == 1
    with pytest.raises(RunNotFoundError):
        registry.record_use("zzzzzzzz", clean)
    with pytest.raises(RunNotFoundError):
        registry.run_inputs("zzzzzzzz")


def test_lineage_downstream(registry: SqlRegistry, pipeline: Pipeline) -> None:
    p = pipeline
    nodes, edges = shape(registry.lineage(p.vid("raw"), direction="down"))
    assert nodes == {
        p.node("raw"): 0,
        p.node("prep"): 1,
        p.node("clean"): 2,
        p.node("train"): 3,
        p.node("model"): 4,
        p.node("eval"): 5,
        p.node("report"): 6,
    }
    assert edges == {
        (p.node("raw"), p.node("prep")),
        (p.node("prep"), p.node("clean")),
        (p.node("clean"), p.node("train")),
        (p.node("train"), p.node("model")),
        (p.node("model"), p.node("eval")),
        (p.node("eval"), p.node("report")),
    }


def test_lineage_upstream_with_depth_limit(registry: SqlRegistry, pipeline: Pipeline) -> None:
    p = pipeline
    graph = registry.lineage(p.vid("model"), direction="up", depth=2)
    nodes, edges = shape(graph)
    assert nodes == {
        p.node("model"): 0,
        p.node("train"): -1,
        p.node("clean"): -2,
        p.node("labels"): -2,
    }
    assert edges == {
        (p.node("train"), p.node("model")),
        (p.node("clean"), p.node("train")),
        (p.node("labels"), p.node("train")),
    }
    assert graph.root == p.node("model") and graph.nodes[0].id == p.node("model")
    by_id = {n.id: n for n in graph.nodes}
    assert (by_id[p.node("model")].kind, by_id[p.node("model")].label) == ("version", "model:v0")
    assert (by_id[p.node("model")].type, by_id[p.node("model")].project) == ("model", "proj")
    assert (by_id[p.node("train")].kind, by_id[p.node("train")].label) == ("run", "train")
    assert by_id[p.node("train")].type == "train"

    full, _ = shape(registry.lineage(p.vid("model"), direction="up"))
    assert full[p.node("raw")] == -4 and p.node("report") not in full


def test_lineage_both_directions_and_depth_zero(registry: SqlRegistry, pipeline: Pipeline) -> None:
    p = pipeline
    nodes, edges = shape(registry.lineage(p.vid("clean"), depth=1))
    assert nodes == {p.node("clean"): 0, p.node("prep"): -1, p.node("train"): 1}
    assert edges == {(p.node("prep"), p.node("clean")), (p.node("clean"), p.node("train"))}
    nodes, edges = shape(registry.lineage(p.vid("clean")))
    assert nodes[p.node("report")] == 4 and nodes[p.node("raw")] == -2
    # labels feeds train alongside clean, but no data flows between labels and clean
    assert p.node("labels") not in nodes and len(nodes) == 7
    single = registry.lineage(p.vid("clean"), depth=0)
    assert [n.id for n in single.nodes] == [p.node("clean")] and single.edges == []
    with pytest.raises(InvalidInputError):
        registry.lineage(p.vid("clean"), depth=-1)
    with pytest.raises(InvalidInputError):
        registry.lineage(p.vid("clean"), direction="sideways")  # type: ignore[arg-type]


def test_dedup_commit_adds_output_edge(registry: SqlRegistry, digest: Digest) -> None:
    first = registry.create_run("proj")
    second = registry.create_run("proj")
    v = log(registry, "ds", digest("same"), first.id)
    again = log(registry, "ds", digest("same"), second.id)
    assert again.id == v.id and again.run_id == first.id
    logged = registry.logged_by(v.id)
    assert logged is not None and logged.id == first.id
    assert [x.id for x in registry.run_outputs(second.id)] == [v.id]
    nodes, _ = shape(registry.lineage(v.id, direction="up"))
    assert set(nodes) == {f"version:{v.id}", f"run:{first.id}"}  # a re-log is no producer


def test_lineage_handles_cycles(registry: SqlRegistry, digest: Digest) -> None:
    # a run that logs a version and then uses it
    run = registry.create_run("proj")
    v = log(registry, "ds", digest("x"), run.id)
    registry.record_use(run.id, v.id)
    graph = registry.lineage(v.id)
    nodes, edges = shape(graph)
    assert set(nodes) == {f"version:{v.id}", f"run:{run.id}"}
    assert edges == {(f"version:{v.id}", f"run:{run.id}"), (f"run:{run.id}", f"version:{v.id}")}


def test_lineage_queries_per_level_not_per_node(registry: SqlRegistry, digest: Digest) -> None:
    """A wide fan-out is walked with a bounded number of statements."""
    import sqlalchemy as sa

    source = log(registry, "source", digest("src"), None)
    for i in range(60):
        run = registry.create_run("proj")
        registry.record_use(run.id, source.id)
        log(registry, f"out{i}", digest(f"out{i}"), run.id)
    statements: list[str] = []

    def count(*args: object) -> None:
        statements.append(str(args[2]))

    sa.event.listen(sa.engine.Engine, "before_cursor_execute", count)
    try:
        graph = registry.lineage(source.id, direction="down")
    finally:
        sa.event.remove(sa.engine.Engine, "before_cursor_execute", count)
    assert len(graph.nodes) == 121 and len(graph.edges) == 120
    assert len([s for s in statements if "run_artifacts" in s]) <= 4
    assert len(statements) < 15


def test_lineage_diamonds_keep_every_edge(registry: SqlRegistry, digest: Digest) -> None:
    """Two runs use V; a logs W and b then logs identical content (the same version, which b
    re-logged: a stays its one producer). Below, c and d both use W and e uses what both
    logged: every edge into an already-visited node is kept, both ways and at every depth."""
    a = registry.create_run("proj", name="a")
    b = registry.create_run("proj", name="b")
    v = log(registry, "v", digest("v"), None)
    registry.record_use(a.id, v.id)
    registry.record_use(b.id, v.id)
    w = log(registry, "w", digest("w"), a.id)
    assert log(registry, "w", digest("w"), b.id).id == w.id  # identical content: same version
    c = registry.create_run("proj", name="c")
    d = registry.create_run("proj", name="d")
    e = registry.create_run("proj", name="e")
    for r in (c, d):
        registry.record_use(r.id, w.id)
    x = log(registry, "x", digest("x"), c.id)
    y = log(registry, "y", digest("y"), d.id)
    registry.record_use(e.id, x.id)
    registry.record_use(e.id, y.id)
    z = log(registry, "z", digest("z"), e.id)
    V, W, X, Y, Z = (f"version:{i.id}" for i in (v, w, x, y, z))
    A, B, C, D, E = (f"run:{r.id}" for r in (a, b, c, d, e))
    every = {
        (V, A), (V, B), (A, W),
        (W, C), (W, D), (C, X), (D, Y), (X, E), (Y, E), (E, Z),
    }  # fmt: skip
    nodes, edges = shape(registry.lineage(v.id, direction="down"))
    assert edges == every
    assert nodes == {V: 0, A: 1, B: 1, W: 2, C: 3, D: 3, X: 4, Y: 4, E: 5, Z: 6}
    nodes, edges = shape(registry.lineage(z.id, direction="up"))
    assert edges == every - {(V, B)}
    assert nodes == {Z: 0, E: -1, X: -2, Y: -2, C: -3, D: -3, W: -4, A: -5, V: -6}
    nodes, edges = shape(registry.lineage(w.id))
    assert edges == every - {(V, B)}
    assert nodes[V] == -2 and nodes[Z] == 4
    # a depth limit keeps the edges between the nodes it reaches
    nodes, edges = shape(registry.lineage(w.id, direction="up", depth=2))
    assert nodes == {W: 0, A: -1, V: -2}
    assert edges == {(V, A), (A, W)}


def test_a_relog_is_recorded_but_is_no_second_producer(
    registry: SqlRegistry, digest: Digest
) -> None:
    """Logging content identical to an existing version makes no version; the run that did it
    lists the version among its outputs and the version's history says who re-logged it, but
    lineage, logged_by and the version's own run name only the run that made it."""
    maker = registry.create_run("proj", name="maker")
    again = registry.create_run("proj", name="again")
    w = log(registry, "w", digest("w"), maker.id)
    for _ in range(2):  # a second re-log by the same run is not a second entry
        assert log(registry, "w", digest("w"), again.id).id == w.id
    log(registry, "w", digest("w"), maker.id)  # the maker logging it again is no re-log
    producer = registry.logged_by(w.id)
    assert producer is not None and producer.id == maker.id
    assert registry.resolve("proj", "w", "latest").run_id == maker.id
    assert [v.id for v in registry.run_outputs(again.id)] == [w.id]
    assert [v.id for v in registry.run_outputs(maker.id)] == [w.id]
    relogs = [h for h in registry.history(w.id) if h.field == "relogged"]
    assert [(h.run_id, h.new["run"]) for h in relogs] == [(again.id, again.id)]
    assert relogs[0].user is not None  # the best identity there is (here: USER@HOST)
    nodes, edges = shape(registry.lineage(w.id, direction="up"))
    assert set(nodes) == {f"version:{w.id}", f"run:{maker.id}"}
    assert edges == {(f"run:{maker.id}", f"version:{w.id}")}
