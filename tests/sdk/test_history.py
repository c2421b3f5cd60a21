"""Editing a logged version: metadata, aliases, history, deletion, and new drafts."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sdk_helpers import make_tree, stored_objects, tree_of, write

import cairn
from cairn.errors import ArtifactNotFoundError, StateError


def _log(tmp_path: Path, content: str, aliases: list[str] | None = None) -> cairn.Artifact:
    write(tmp_path / "src" / "data.txt", content)
    art = cairn.Artifact("ds", type="dataset", metadata={"rows": 1})
    art.add_file(tmp_path / "src" / "data.txt")
    with cairn.init(project="proj", job_type="prep") as run:
        run.log_artifact(art, aliases=aliases)
    return art


def test_edits_are_saved_and_recorded_in_history(tmp_path: Path) -> None:
    art = _log(tmp_path, "one", aliases=["raw"])
    creator = art.logged_by()
    assert creator is not None
    with cairn.init(project="proj", job_type="eval") as run:
        v0 = run.use_artifact("ds:v0")
        v0.metadata["accuracy"] = 0.9
        v0.aliases.append("best")
        v0.description = "checked by eval"
        v0.tags.append("reviewed")
        v0.save()
    assert v0.metadata == {"rows": 1, "accuracy": 0.9}
    assert v0.aliases == ["latest", "best", "raw"]

    # outside a run the edit records no run
    again = cairn.Api("proj").artifact("ds:best")
    again.metadata = {"rows": 2}
    again.save()
    again.save()  # nothing changed: nothing recorded

    stored = cairn.Api("proj").artifact("ds:v0")
    assert stored.metadata == {"rows": 2}
    assert stored.description == "checked by eval"
    assert stored.tags == ["reviewed"]
    history = stored.history()
    assert history[0].field == "created"
    assert history[0].run_id == creator.id
    assert history[0].new["version"] == 0
    assert history[0].new["aliases"] == ["raw"]
    assert [(h.field, h.old, h.new, h.run_id) for h in history[1:]] == [
        ("description", "", "checked by eval", run.id),
        ("metadata", {"rows": 1}, {"rows": 1, "accuracy": 0.9}, run.id),
        ("aliases", ["raw"], ["best", "raw"], run.id),
        ("tags", [], ["reviewed"], run.id),
        ("metadata", {"rows": 1, "accuracy": 0.9}, {"rows": 2}, None),
    ]
    times = [h.at for h in history]
    assert times == sorted(times)


def test_moving_an_alias_is_recorded_on_both_versions(tmp_path: Path) -> None:
    _log(tmp_path, "one", aliases=["best"])
    v1 = _log(tmp_path, "two")
    v1.aliases.append("best")
    v1.save()
    api = cairn.Api("proj")
    v0_history = api.artifact("ds:v0").history()
    assert [(h.field, h.old, h.new) for h in v0_history[1:]] == [("aliases", ["best"], [])]
    v1_history = api.artifact("ds:v1").history()
    assert [(h.field, h.old, h.new) for h in v1_history[1:]] == [("aliases", [], ["best"])]


def test_delete_refuses_a_version_with_aliases_unless_asked(tmp_path: Path) -> None:
    _log(tmp_path, "one")
    v1 = _log(tmp_path, "two", aliases=["best"])
    with pytest.raises(StateError, match="aliases best"):
        v1.delete()
    api = cairn.Api("proj")
    assert [v.version for v in api.artifact_versions("ds")] == ["v1", "v0"]
    assert api.artifact("ds:best").version == "v1"

    with cairn.init(project="proj", job_type="cleanup") as cleanup:
        v1.delete(delete_aliases=True)
    assert v1.state == "deleted"
    assert [v.version for v in api.artifact_versions("ds")] == ["v0"]
    assert api.artifact("ds:latest").version == "v0"
    with pytest.raises(ArtifactNotFoundError, match=r"v1 was deleted"):
        api.artifact("ds:v1")
    with pytest.raises(ArtifactNotFoundError, match="'best'"):
        api.artifact("ds:best")
    history = v1.history()
    assert [(h.field, h.old, h.new, h.run_id) for h in history[1:]] == [
        ("aliases", ["best"], [], cleanup.id),
        ("deleted", "committed", "deleted", cleanup.id),
    ]
    with pytest.raises(StateError, match="deleted"):
        v1.metadata["x"] = 1
        v1.save()

    # the number of a deleted version is never given again
    v2 = _log(tmp_path, "three")
    assert v2.version == "v2"
    assert [v.version for v in api.artifact_versions("ds")] == ["v2", "v0"]


def test_the_latest_version_without_aliases_can_be_deleted(tmp_path: Path) -> None:
    _log(tmp_path, "one")
    v1 = _log(tmp_path, "two")
    assert v1.aliases == ["latest"]
    v1.delete()
    assert cairn.Api("proj").artifact("ds:latest").version == "v0"
    # logging the deleted content again makes a new version
    again = _log(tmp_path, "two")
    assert (again.version, again.digest) == ("v2", v1.digest)


def test_new_draft_adds_files_without_downloading(tmp_path: Path) -> None:
    big = {f"shard-{i}.bin": bytes([i]) * 5000 for i in range(4)}
    folder = make_tree(tmp_path / "data", {**big, "README.md": "v0"})
    base = cairn.Artifact("ds", type="dataset", description="shards", metadata={"n": 4})
    base.add_dir(folder)
    with cairn.init(project="proj") as run:
        run.log_artifact(base)
    objects_before = stored_objects()
    shutil.rmtree(folder)  # the new version's old files can only come from the store

    write(tmp_path / "extra.bin", b"extra")
    write(tmp_path / "README.md", "v1")
    with cairn.init(project="proj") as run:
        draft = run.use_artifact("ds:latest").new_draft()
        assert draft.is_draft
        assert (draft.description, draft.metadata) == ("shards", {"n": 4})
        draft.add_file(tmp_path / "extra.bin", name="more/extra.bin")
        draft.add_file(tmp_path / "README.md", overwrite=True)
        draft.remove("shard-0.bin")
        sizes = {f.path: f.size for f in draft.files()}
        assert sizes == {
            **{p: 5000 for p in big if p != "shard-0.bin"},
            "README.md": 2,
            "more/extra.bin": 5,
        }
        run.log_artifact(draft)
    assert draft.version == "v1"
    assert os.listdir(".") == []  # nothing was downloaded
    assert len(stored_objects() - objects_before) == 4  # 2 blobs, 2 trees
    expected = {**big, "README.md": b"v1", "more/extra.bin": b"extra"}
    del expected["shard-0.bin"]
    assert tree_of(draft.download()) == expected
    assert tree_of(cairn.Api("proj").artifact("ds:v0").download()) == {
        **big,
        "README.md": b"v0",
    }


def test_every_history_entry_names_who(tmp_path: Path, backend_mode: str) -> None:
    """The best identity there is: the account through a server; embedded, USER@HOST of the
    process (with the run, when there is one), never nobody."""
    import getpass
    import socket

    art = _log(tmp_path, "one")
    edit = cairn.Api("proj").artifact("ds:v0")
    edit.description = "outside any run"
    edit.save()
    who = "tester" if backend_mode == "remote" else f"{getpass.getuser()}@{socket.gethostname()}"
    history = cairn.Api("proj").artifact("ds:v0").history()
    assert [(h.field, h.user) for h in history] == [("created", who), ("description", who)]
    assert history[0].run_id == art.logged_by().id  # type: ignore[union-attr]


def test_a_relog_names_one_producer_and_is_recorded(tmp_path: Path) -> None:
    """Logging identical files again makes no version; the run that did is listed with the
    version among its outputs and in the version's history, but lineage and logged_by name
    only the run that made it."""
    first = _log(tmp_path, "same")
    maker = first.logged_by()
    assert maker is not None
    second = _log(tmp_path, "same")
    assert second.version == first.version == "v0"
    again = cairn.Api("proj").runs()[0]
    assert again.id != maker.id
    version = cairn.Api("proj").artifact("ds:v0")
    assert version.logged_by().id == maker.id  # type: ignore[union-attr]
    assert [a.qualified_name for a in again.logged_artifacts()] == [version.qualified_name]
    relogs = [h for h in version.history() if h.field == "relogged"]
    assert [(h.run_id, h.new["run"]) for h in relogs] == [(again.id, again.id)]
    graph = version.lineage(direction="up")
    assert {n.id for n in graph.nodes if n.kind == "run"} == {f"run:{maker.id}"}
