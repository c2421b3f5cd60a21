"""Lineage (inputs, outputs, the graph) and the Api's listings."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest
from sdk_helpers import write

import cairn
from cairn.errors import InvalidInputError, RunNotFoundError


@dataclass
class Chain:
    prep: cairn.Run
    train: cairn.Run
    evaluate: cairn.Run
    raw: cairn.Artifact
    model: cairn.Artifact
    report: cairn.Artifact


@pytest.fixture
def chain(tmp_path: Path) -> Chain:
    """prep --raw:v0--> train --model:v0--> evaluate --report:v0."""
    with cairn.init(project="proj", job_type="prep") as prep:
        raw = prep.log_artifact(write(tmp_path / "raw.csv", "1,2\n"), name="raw")
    with cairn.init(project="proj", job_type="train") as train:
        train.use_artifact("raw:latest").download(root=tmp_path / "dl")
        model = train.log_artifact(write(tmp_path / "model.bin", b"w"), name="model", type="model")
    with cairn.init(project="proj", job_type="evaluate") as evaluate:
        evaluate.use_artifact("model:latest")
        evaluate.use_artifact("model:v0")  # using it twice records one edge
        report = evaluate.log_artifact(
            write(tmp_path / "report.json", "{}"), name="report", type="report"
        )
    return Chain(prep, train, evaluate, raw, model, report)


def _node(run: cairn.Run) -> str:
    return f"run:{run.id}"


def _vnode(art: cairn.Artifact) -> str:
    return f"version:{art.id}"


def test_runs_record_their_inputs_and_outputs(chain: Chain) -> None:
    api = cairn.Api("proj")
    assert [a.qualified_name for a in api.run(chain.train.id).used_artifacts()] == ["proj/raw:v0"]
    assert [a.qualified_name for a in api.run(chain.train.id).logged_artifacts()] == [
        "proj/model:v0"
    ]
    assert [a.qualified_name for a in chain.evaluate.used_artifacts()] == ["proj/model:v0"]
    assert chain.prep.used_artifacts() == []

    model = api.artifact("model:v0")
    logged_by = model.logged_by()
    assert logged_by is not None
    assert (logged_by.id, logged_by.job_type) == (chain.train.id, "train")
    assert [r.id for r in model.used_by()] == [chain.evaluate.id]
    assert [r.id for r in api.artifact("raw:v0").used_by()] == [chain.train.id]
    assert api.artifact("report:v0").used_by() == []


def test_upstream_lineage_with_depth(chain: Chain) -> None:
    graph = cairn.Api("proj").artifact("report:v0").lineage(direction="up")
    assert graph.root == _vnode(chain.report)
    assert graph.nodes[0].id == graph.root
    assert {(n.id, n.depth, n.label, n.kind, n.type) for n in graph.nodes} == {
        (_vnode(chain.report), 0, "report:v0", "version", "report"),
        (_node(chain.evaluate), -1, chain.evaluate.name, "run", "evaluate"),
        (_vnode(chain.model), -2, "model:v0", "version", "model"),
        (_node(chain.train), -3, chain.train.name, "run", "train"),
        (_vnode(chain.raw), -4, "raw:v0", "version", "dataset"),
        (_node(chain.prep), -5, chain.prep.name, "run", "prep"),
    }
    assert sorted((e.source, e.target) for e in graph.edges) == sorted(
        [
            (_node(chain.prep), _vnode(chain.raw)),
            (_vnode(chain.raw), _node(chain.train)),
            (_node(chain.train), _vnode(chain.model)),
            (_vnode(chain.model), _node(chain.evaluate)),
            (_node(chain.evaluate), _vnode(chain.report)),
        ]
    )
    near = chain.report.lineage(direction="up", depth=2)
    assert {n.id for n in near.nodes} == {
        _vnode(chain.report),
        _node(chain.evaluate),
        _vnode(chain.model),
    }
    assert len(near.edges) == 2


def test_downstream_and_both_ways(chain: Chain) -> None:
    down = cairn.Api("proj").lineage("raw:v0", direction="down")
    assert {(n.id, n.depth) for n in down.nodes} == {
        (_vnode(chain.raw), 0),
        (_node(chain.train), 1),
        (_vnode(chain.model), 2),
        (_node(chain.evaluate), 3),
        (_vnode(chain.report), 4),
    }
    assert len(down.edges) == 4
    both = chain.model.lineage(depth=1)
    assert {(n.id, n.depth) for n in both.nodes} == {
        (_vnode(chain.model), 0),
        (_node(chain.train), -1),
        (_node(chain.evaluate), 1),
    }
    assert {(e.source, e.target) for e in both.edges} == {
        (_node(chain.train), _vnode(chain.model)),
        (_vnode(chain.model), _node(chain.evaluate)),
    }
    assert {n.id for n in chain.model.lineage().nodes} == {
        _vnode(a) for a in (chain.raw, chain.model, chain.report)
    } | {_node(r) for r in (chain.prep, chain.train, chain.evaluate)}


def test_logging_existing_content_is_a_relog_not_a_second_producer(
    chain: Chain, tmp_path: Path
) -> None:
    with cairn.init(project="proj", job_type="prep") as again:
        same = again.log_artifact(tmp_path / "raw.csv", name="raw")
    assert same.version == "v0"
    assert [a.qualified_name for a in again.logged_artifacts()] == ["proj/raw:v0"]
    logged_by = same.logged_by()
    assert logged_by is not None and logged_by.id == chain.prep.id  # the creator stays
    up = same.lineage(direction="up")  # one answer to "which run made this?"
    assert {n.id for n in up.nodes} == {_vnode(chain.raw), _node(chain.prep)}
    relogs = [(h.field, h.run_id) for h in same.history() if h.field == "relogged"]
    assert relogs == [("relogged", again.id)]


def test_api_lists_projects_artifacts_versions_and_runs(chain: Chain, tmp_path: Path) -> None:
    with cairn.init(project="proj") as run:
        write(tmp_path / "model.bin", b"w2")
        run.log_artifact(tmp_path / "model.bin", name="model", type="model")
    with cairn.init(project="elsewhere") as other:
        other.use_artifact("proj/raw:v0")
    api = cairn.Api()
    projects = {p.name: p for p in api.projects()}
    assert sorted(projects) == ["elsewhere", "proj"]
    assert (projects["proj"].artifact_count, projects["proj"].run_count) == (3, 4)
    assert (projects["elsewhere"].artifact_count, projects["elsewhere"].run_count) == (0, 1)

    latest = api.artifacts("proj")
    assert [(a.name, a.version) for a in latest] == [
        ("model", "v1"),
        ("raw", "v0"),
        ("report", "v0"),
    ]
    assert [a.name for a in api.artifacts("proj", type="model")] == ["model"]
    assert [v.version for v in api.artifact_versions("model", project="proj")] == ["v1", "v0"]
    assert [v.version for v in api.artifact_versions("proj/model")] == ["v1", "v0"]
    assert api.artifact("proj/model:v0", type="model").digest == chain.model.digest
    with pytest.raises(InvalidInputError, match="has type 'model', not 'dataset'"):
        api.artifact("proj/model:v0", type="dataset")

    runs = api.runs("proj")
    assert [r.id for r in runs][1:] == [chain.evaluate.id, chain.train.id, chain.prep.id]
    assert [r.id for r in api.runs("proj", job_type="train")] == [chain.train.id]
    assert api.run(chain.prep.id).state == "finished"
    assert [a.qualified_name for a in api.run(other.id).used_artifacts()] == ["proj/raw:v0"]
    with pytest.raises(RunNotFoundError):
        api.run("nosuchid")
