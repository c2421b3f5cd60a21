"""Registries from the SDK (embedded on SQLite and PostgreSQL, and through a server): link
without copying, resolve 'registry/collection:alias' with lineage against the real version,
as-of answers, and search."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sdk_helpers import write

import cairn
from cairn.errors import ArtifactNotFoundError, InvalidInputError, InvalidNameError


def tick() -> datetime:
    time.sleep(0.05)
    at = datetime.now(UTC)
    time.sleep(0.05)
    return at


def test_promote_then_ask_what_was_in_production(tmp_path: Path) -> None:
    api = cairn.Api()
    api.create_registry("models", protected_aliases=["production"])
    with cairn.init(project="vision", job_type="train") as run:
        first = run.log_artifact(write(tmp_path / "m1.bin", b"one"), name="clf", type="model")
        link = run.link_artifact(first, "models/classifier", aliases=["production"])
    assert (link.qualified_name, link.target.qualified_name) == (
        "models/classifier:v0",
        "vision/clf:v0",
    )
    monday = tick()
    with cairn.init(project="nlp", job_type="train") as run:
        second = run.log_artifact(write(tmp_path / "m2.bin", b"two"), name="tagger", type="model")
        second.link("models/classifier", aliases=["production"])
    tuesday = tick()

    now = api.artifact("models/classifier:production")
    assert (now.qualified_name, now.id) == ("nlp/tagger:v0", second.id)
    then = api.artifact("models/classifier:production", at=monday)
    assert (then.qualified_name, then.id) == ("vision/clf:v0", first.id)
    assert api.artifact("models/classifier:latest", at=tuesday).id == second.id
    # linking copied nothing: the collection's versions are the projects' versions
    assert [x.target.id for x in api.collection_versions("models/classifier")] == [
        second.id,
        first.id,
    ]
    assert [(x.registry, x.collection, x.version) for x in first.links()] == [
        ("models", "classifier", 0)
    ]
    history = api.collection_history("models/classifier")
    assert [(h.field, h.version, h.alias) for h in history if h.field == "alias"] == [
        ("alias", 0, "production"),
        ("alias", 1, "production"),
    ]


def test_use_artifact_through_a_collection_records_lineage_on_the_real_version(
    tmp_path: Path,
) -> None:
    cairn.Api().create_registry("models")
    with cairn.init(project="vision", job_type="train") as run:
        model = run.log_artifact(write(tmp_path / "m.bin", b"w"), name="clf", type="model")
        run.link_artifact(model, "models/classifier", aliases=["staging"])
    with cairn.init(project="serving", job_type="deploy") as deploy:
        used = deploy.use_artifact("models/classifier:staging")
        assert used.qualified_name == "vision/clf:v0"
        assert used.download(root=tmp_path / "dl")
    assert (tmp_path / "dl" / "m.bin").read_bytes() == b"w"
    assert [r.id for r in model.used_by()] == [deploy.id]
    assert [a.id for a in deploy.used_artifacts()] == [model.id]
    with (
        cairn.init(project="serving") as other,
        pytest.raises(ArtifactNotFoundError, match="no version or alias 'production'"),
    ):
        other.use_artifact("models/classifier:production")


def test_as_of_on_plain_artifacts(tmp_path: Path) -> None:
    with cairn.init(project="p") as run:
        a = run.log_artifact(write(tmp_path / "a", "a"), name="ds", aliases=["production"])
    t_a = tick()
    with cairn.init(project="p") as run:
        b = run.log_artifact(write(tmp_path / "b", "b"), name="ds", aliases=["production"])
    api = cairn.Api(project="p")
    assert api.artifact("ds:production", at=t_a).id == a.id
    assert api.artifact("p/ds:production").id == b.id
    assert api.artifact("ds:latest", at=t_a).id == a.id
    with pytest.raises(InvalidInputError, match="timezone-aware"):
        api.artifact("ds:production", at=datetime(2026, 1, 1))


def test_search_versions_by_metadata_and_tags(tmp_path: Path) -> None:
    with cairn.init(project="p") as run:
        for i, acc in enumerate([0.7, 0.95, 0.91, 0.5]):
            art = cairn.Artifact("model", type="model", metadata={"acc": acc, "i": i})
            art.add_file(write(tmp_path / f"w{i}", str(i)))
            run.log_artifact(art, tags=["eval"] if i % 2 else [])
    api = cairn.Api(project="p")
    found = api.artifact_versions(
        "model", filters={"metadata.acc": {"$gt": 0.9}}, order="-metadata.acc"
    )
    assert [a.metadata["acc"] for a in found] == [0.95, 0.91]
    tagged = api.artifact_versions("model", filters={"tags": {"$in": ["eval"]}}, order="version")
    assert [a.version for a in tagged] == ["v1", "v3"]
    assert [a.version for a in api.search({"metadata.i": {"$lte": 1}}, "metadata.i")] == [
        "v0",
        "v1",
    ]
    with pytest.raises(InvalidInputError, match="unknown operator"):
        api.artifact_versions("model", filters={"metadata.acc": {"$gtx": 1}})
    cairn.Api().create_registry("models")
    for a in found:
        a.link("models/clf")
    best = api.artifact_versions("models/clf", filters={"metadata.acc": {"$gte": 0.95}})
    assert [a.id for a in best] == [found[0].id]
    assert [a.id for a in api.search(registry="models", order="metadata.acc")] == [
        found[1].id,
        found[0].id,
    ]


def test_bad_collection_names_are_clear(tmp_path: Path) -> None:
    cairn.Api().create_registry("models")
    with cairn.init(project="p") as run:
        art = run.log_artifact(write(tmp_path / "x", "x"), name="x")
        with pytest.raises(InvalidNameError, match="registry/collection"):
            run.link_artifact(art, "classifier")
        with pytest.raises(InvalidNameError):
            art.link("models/bad name")
    with pytest.raises(ArtifactNotFoundError, match="has no collection 'nope'"):
        cairn.Api().artifact("models/nope:latest")
