"""The artifact itself (W&B's "collection"): rename it, change its type, its own description
and tags, delete every version, ask whether it exists; version listings by order and tags."""

from __future__ import annotations

from pathlib import Path

import pytest
from sdk_helpers import write

import cairn
from cairn.errors import ArtifactNotFoundError, ConflictError, InvalidInputError, InvalidNameError


def _log(tmp_path: Path, name: str, content: str, **kwargs: object) -> cairn.Artifact:
    art = cairn.Artifact(name, type="dataset")
    art.add_file(write(tmp_path / "src" / f"{name}-{content}.txt", content), name="data.txt")
    run = cairn.current_run()
    assert run is not None
    return run.log_artifact(art, **kwargs)  # type: ignore[arg-type]


def test_version_listings_by_order_and_tags(tmp_path: Path) -> None:
    with cairn.init(project="proj"):
        _log(tmp_path, "ds", "0", tags=["raw"])
        _log(tmp_path, "ds", "1", tags=["raw", "clean"])
        _log(tmp_path, "ds", "2", tags=["clean"])
    api = cairn.Api("proj")
    assert [a.version for a in api.artifact_versions("ds")] == ["v2", "v1", "v0"]
    assert [a.version for a in api.artifact_versions("ds", order="version")] == ["v0", "v1", "v2"]
    assert [a.version for a in api.artifact_versions("ds", order="created_at")] == [
        "v0",
        "v1",
        "v2",
    ]
    assert [a.version for a in api.artifact_versions("ds", order="-created_at", limit=2)] == [
        "v2",
        "v1",
    ]
    assert [a.version for a in api.artifact_versions("ds", tags=["clean"])] == ["v2", "v1"]
    assert [a.version for a in api.artifact_versions("ds", tags=["clean", "raw"])] == ["v1"]
    assert api.artifact_versions("ds", tags=["none"]) == []
    assert len(api.artifact_versions("ds", order="-size")) == 3  # any search field orders
    with pytest.raises(InvalidInputError, match="unknown filter field 'colour'"):
        api.artifact_versions("ds", order="colour")
    with pytest.raises(InvalidNameError):
        api.artifact_versions("ds", tags=["bad tag"])


def test_exists(tmp_path: Path) -> None:
    with cairn.init(project="proj"):
        _log(tmp_path, "ds", "0", aliases=["best"])
    api = cairn.Api("proj")
    assert api.artifact_exists("ds") and api.artifact_exists("proj/ds:best")
    assert api.artifact_exists("ds:v0", type="dataset")
    assert not api.artifact_exists("ds", type="model")
    assert not api.artifact_exists("ds:v7") and not api.artifact_exists("nope")
    assert not api.artifact_exists("other-project/ds")
    assert api.artifact_collection_exists("ds") and api.artifact_collection_exists("ds", "dataset")
    assert not api.artifact_collection_exists("ds", "model")
    assert not api.artifact_collection_exists("nope")


def test_rename_retype_describe_and_tag_an_artifact(tmp_path: Path) -> None:
    with cairn.init(project="proj") as run:
        _log(tmp_path, "ds", "0", aliases=["best"])
        v1 = _log(tmp_path, "ds", "1")
        _log(tmp_path, "taken", "0")
    with cairn.init(project="proj") as reader:
        reader.use_artifact("ds:best")
    api = cairn.Api("proj")
    collection = api.artifact_collection("ds")
    assert (collection.name, collection.type, collection.version_count) == ("ds", "dataset", 2)
    assert collection.is_sequence() and collection.aliases == ["best", "latest"]
    collection.name = "taken"
    with pytest.raises(ConflictError, match="already exists"):
        collection.save()
    collection.name = "images"
    collection.description = "cat pictures"
    collection.tags = ["curated", "vision"]
    collection.save()
    assert collection.updated_at >= collection.created_at
    with cairn.init(project="proj", job_type="curate") as editor:
        collection.change_type("image-set")
    collection.save()  # nothing changed: nothing recorded

    again = cairn.Api("proj").artifact_collection("images")
    assert (again.name, again.type, again.description, again.tags) == (
        "images",
        "image-set",
        "cat pictures",
        ["curated", "vision"],
    )
    assert not api.artifact_exists("ds")
    best = api.artifact("images:best")
    assert (best.name, best.type, best.version) == ("images", "image-set", "v0")
    assert [r.id for r in best.used_by()] == [reader.id]
    assert [a.qualified_name for a in run.logged_artifacts()] == [
        "proj/images:v0",
        "proj/images:v1",
        "proj/taken:v0",
    ]
    assert [v.version for v in again.versions()] == ["v1", "v0"]
    assert v1.digest == api.artifact("images:latest").digest
    # a rename and a change of type are in every version's history (with the run that made
    # them), and the listing shows the artifact under its new name and type
    for version in ("v0", "v1"):
        history = api.artifact(f"images:{version}").history()
        assert [(h.field, h.old, h.new, h.run_id) for h in history[1:]] == [
            ("name", "ds", "images", None),
            ("type", "dataset", "image-set", editor.id),
        ]
    assert api.artifact("images:v1").updated_at == history[-1].at
    listed = {a.name: a for a in api.artifacts()}
    assert sorted(listed) == ["images", "taken"] and listed["images"].type == "image-set"
    assert listed["images"].updated_at == history[-1].at
    # the next log goes on the renamed artifact, with its new type
    with cairn.init(project="proj"):
        art = cairn.Artifact("images", type="image-set")
        art.add_file(write(tmp_path / "x.txt", "x"))
        cairn.log_artifact(art)
    assert art.version == "v2"
    again.tags = []
    again.save()
    assert cairn.Api("proj").artifact_collection("images").tags == []


def test_delete_every_version(tmp_path: Path) -> None:
    with cairn.init(project="proj") as run:
        _log(tmp_path, "ds", "0", aliases=["best"])
        _log(tmp_path, "ds", "1")
        _log(tmp_path, "keep", "0")
    api = cairn.Api("proj")
    collection = api.artifact_collection("ds")
    assert collection.delete() == 2
    assert collection.version_count == 0
    assert not api.artifact_collection_exists("ds")
    assert not api.artifact_exists("ds:best")
    with pytest.raises(ArtifactNotFoundError):
        api.artifact("ds:latest")
    assert [a.name for a in api.artifacts()] == ["keep"]
    assert [h.field for h in api.artifact("keep").history()] == ["created"]
    deleted = {a.version: a for a in run.logged_artifacts() if a.name == "ds"}
    assert [h.field for h in deleted["v0"].history()] == ["created", "aliases", "deleted"]
    assert [h.field for h in deleted["v1"].history()] == ["created", "deleted"]
    # numbers are never reused
    with cairn.init(project="proj"):
        again = _log(tmp_path, "ds", "new")
    assert again.version == "v2"
