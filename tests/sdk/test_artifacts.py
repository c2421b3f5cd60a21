"""Artifacts: filling a draft, logging versions, and what a logged version knows.

What the SDK checks or does on its own (drafts, refused arguments, the garbage collector) runs on
SQLite and remote (`SQLITE_AND_REMOTE`); versions, aliases and types run on embedded PostgreSQL
too."""

from __future__ import annotations

import gc
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sdk_helpers import SQLITE_AND_REMOTE, make_tree, store_unchanged, tree_of, write

import cairn
from cairn.core.digest import is_digest
from cairn.errors import ArtifactStateError, InvalidInputError, InvalidNameError


@SQLITE_AND_REMOTE
def test_draft_is_filled_with_files_folders_and_new_files(tmp_path: Path) -> None:
    src = make_tree(
        tmp_path / "src",
        {"data/a.csv": "x,y\n1,2\n", "data/sub/b.csv": "x\n3\n", "model.bin": b"\x00\x01"},
    )
    art = cairn.Artifact("bundle", type="dataset")
    assert art.is_draft and art.state == "draft"
    art.add_file(src / "model.bin")  # at its file name
    art.add_file(src / "model.bin", name="weights/final.bin")  # elsewhere
    art.add_dir(src / "data")  # at the root
    art.add_dir(src / "data", name="copy")  # under copy/
    with art.new_file("notes.txt") as f:
        f.write("héllo\n")
    with art.new_file("raw/blob.bin", mode="wb") as f:
        f.write(b"\xff\x00\xfe")
    assert [f.path for f in art.files()] == [
        "a.csv",
        "copy/a.csv",
        "copy/sub/b.csv",
        "model.bin",
        "notes.txt",
        "raw/blob.bin",
        "sub/b.csv",
        "weights/final.bin",
    ]
    art.remove("copy/sub")  # a folder
    art.remove("model.bin")  # a file
    expected = {
        "a.csv": b"x,y\n1,2\n",
        "copy/a.csv": b"x,y\n1,2\n",
        "notes.txt": "héllo\n".encode(),
        "raw/blob.bin": b"\xff\x00\xfe",
        "sub/b.csv": b"x\n3\n",
        "weights/final.bin": b"\x00\x01",
    }
    assert [f.path for f in art.files()] == sorted(expected)
    assert {f.path: f.size for f in art.files()} == {p: len(c) for p, c in expected.items()}
    assert [f.path for f in art.files("copy")] == ["copy/a.csv"]

    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    assert not art.is_draft
    assert art.file_count == len(expected)
    assert art.size == sum(len(c) for c in expected.values())
    assert tree_of(art.download()) == expected


def test_a_logged_version_knows_its_facts(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "alpha")
    write(tmp_path / "b.txt", "beta!")
    art = cairn.Artifact(
        "facts",
        type="dataset",
        description="two small files",
        metadata={"rows": 2, "source": {"kind": "synthetic"}},
    )
    art.add_file(tmp_path / "a.txt")
    art.add_file(tmp_path / "b.txt")
    art.tags.append("small")
    before = datetime.now(UTC)
    with cairn.init(project="proj") as run:
        logged = run.log_artifact(art, aliases=["best", "candidate"], tags=["raw"])
    assert logged is art
    assert art.version == "v0"
    assert art.qualified_name == "proj/facts:v0"
    assert art.project == "proj"
    assert is_digest(art.digest)
    assert art.size == 10
    assert art.file_count == 2
    assert art.aliases == ["latest", "best", "candidate"]
    assert art.tags == ["raw", "small"]
    assert art.metadata == {"rows": 2, "source": {"kind": "synthetic"}}
    assert art.description == "two small files"
    assert art.created_at.tzinfo is not None
    assert before - timedelta(seconds=1) <= art.created_at <= datetime.now(UTC)
    assert art.state == "committed"

    stored = cairn.Api("proj").artifact("facts:v0")
    for field in (
        "version",
        "digest",
        "size",
        "file_count",
        "aliases",
        "tags",
        "metadata",
        "description",
        "created_at",
        "type",
    ):
        assert getattr(stored, field) == getattr(art, field), field


def test_versions_count_up_and_latest_moves_by_itself(tmp_path: Path) -> None:
    digests = []
    with cairn.init(project="proj") as run:
        for i in range(3):
            write(tmp_path / "data.txt", f"content {i}")
            art = cairn.Artifact("counter", type="dataset")
            art.add_file(tmp_path / "data.txt")
            run.log_artifact(art)
            assert art.version == f"v{i}"
            assert art.aliases == ["latest"]
            digests.append(art.digest)
    assert len(set(digests)) == 3
    api = cairn.Api("proj")
    versions = api.artifact_versions("counter")
    assert [(v.version, v.digest) for v in versions] == [
        ("v2", digests[2]),
        ("v1", digests[1]),
        ("v0", digests[0]),
    ]
    assert [v.aliases for v in versions] == [["latest"], [], []]
    assert api.artifact("counter:latest").version == "v2"
    assert api.artifact("counter").version == "v2"


def test_an_alias_belongs_to_one_version_of_an_artifact(tmp_path: Path) -> None:
    api = cairn.Api("proj")
    with cairn.init(project="proj") as run:
        for i in range(2):
            write(tmp_path / "m.bin", f"model {i}")
            art = cairn.Artifact("model", type="model")
            art.add_file(tmp_path / "m.bin")
            run.log_artifact(art, aliases=["best"] if i == 0 else [])
        other = cairn.Artifact("other-model", type="model")
        other.add_file(tmp_path / "m.bin")
        run.log_artifact(other, aliases=["best"])  # another artifact may use the same alias
    assert api.artifact("model:best").version == "v0"

    v1 = api.artifact("model:v1")
    v1.aliases.append("best")
    v1.save()
    assert v1.aliases == ["latest", "best"]
    assert api.artifact("model:best").version == "v1"
    assert api.artifact("model:v0").aliases == []
    assert api.artifact("other-model:best").version == "v0"

    # logging a new version with the alias moves it again
    write(tmp_path / "m.bin", "model 2")
    with cairn.init(project="proj") as run:
        art = cairn.Artifact("model", type="model")
        art.add_file(tmp_path / "m.bin")
        run.log_artifact(art, aliases=["best"])
    assert [(v.version, v.aliases) for v in api.artifact_versions("model")] == [
        ("v2", ["latest", "best"]),
        ("v1", []),
        ("v0", []),
    ]


@SQLITE_AND_REMOTE
def test_version_labels_cannot_be_given_when_logging(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a")
    art = cairn.Artifact("labels", type="dataset")
    art.add_file(tmp_path / "a.txt")
    with cairn.init(project="proj") as run:
        for alias in ("v0", "v3"):  # 'latest' is accepted (test_wandb_behaviour.py)
            with pytest.raises(InvalidNameError, match=f"alias {alias!r} is set by Cairn itself"):
                run.log_artifact(art, aliases=["fine", alias])
        assert art.is_draft
        with pytest.raises(cairn.errors.ArtifactNotFoundError):
            cairn.Api("proj").artifact_versions("labels")


def test_latest_and_version_labels_cannot_be_set_by_hand(tmp_path: Path) -> None:
    with cairn.init(project="proj") as run:
        for i in range(2):
            write(tmp_path / "a.txt", f"a{i}")
            art = cairn.Artifact("labels", type="dataset")
            art.add_file(tmp_path / "a.txt")
            run.log_artifact(art)
    api = cairn.Api("proj")
    for alias in ("latest", "v1", "v7"):
        v0 = api.artifact("labels:v0")
        v0.aliases.append(alias)
        with pytest.raises(InvalidNameError, match=f"alias {alias!r} is set by Cairn itself"):
            v0.save()
    assert api.artifact("labels:v0").aliases == []
    assert api.artifact("labels:latest").version == "v1"
    assert [h.field for h in api.artifact("labels:v0").history()] == ["created"]


def test_latest_stays_with_the_newest_version_when_its_aliases_are_replaced(
    tmp_path: Path,
) -> None:
    write(tmp_path / "a.txt", "a")
    with cairn.init(project="proj") as run:
        art = run.log_artifact(tmp_path / "a.txt", name="labels", aliases=["candidate"])
    art.aliases = ["production"]
    art.save()
    assert art.aliases == ["latest", "production"]
    assert cairn.Api("proj").artifact("labels:v0").aliases == ["latest", "production"]


def test_a_path_is_logged_as_a_new_artifact(tmp_path: Path) -> None:
    make_tree(tmp_path / "images", {"cat.png": b"\x89PNG cat", "dog/1.png": b"\x89PNG dog"})
    write(tmp_path / "labels.json", '{"cat": 0}')
    with cairn.init(project="proj") as run:
        folder = run.log_artifact(tmp_path / "images", type="images", aliases=["raw"])
        single = cairn.log_artifact(str(tmp_path / "labels.json"), name="labels")
    assert (folder.name, folder.type, folder.version) == ("images", "images", "v0")
    assert folder.aliases == ["latest", "raw"]
    assert tree_of(folder.download()) == {"cat.png": b"\x89PNG cat", "dog/1.png": b"\x89PNG dog"}
    assert (single.name, single.type) == ("labels", "dataset")
    assert Path(single.file()).read_text() == '{"cat": 0}'


@SQLITE_AND_REMOTE
def test_a_logged_version_cannot_change_its_files(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a")
    art = cairn.Artifact("fixed", type="dataset")
    art.add_file(tmp_path / "a.txt")
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
        for change in (
            lambda: art.add_file(tmp_path / "a.txt", name="b.txt"),
            lambda: art.add_dir(tmp_path),
            lambda: art.remove("a.txt"),
            lambda: art.new_file("c.txt").__enter__(),
        ):
            with pytest.raises(ArtifactStateError, match="new_draft"):
                change()
        with pytest.raises(ArtifactStateError):
            run.log_artifact(art)
    assert [f.path for f in art.files()] == ["a.txt"]


def test_an_artifact_keeps_its_type(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a")
    with cairn.init(project="proj") as run:
        run.log_artifact(tmp_path / "a.txt", name="typed", type="dataset")
        write(tmp_path / "a.txt", "changed")
        # refused before anything is read or stored
        with store_unchanged(), pytest.raises(InvalidNameError, match="type 'dataset'"):
            run.log_artifact(tmp_path / "a.txt", name="typed", type="model")
    assert [v.version for v in cairn.Api("proj").artifact_versions("typed")] == ["v0"]


def test_an_artifact_of_another_project_is_refused(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a")
    with cairn.init(project="one") as run:
        art = run.log_artifact(tmp_path / "a.txt", name="shared")
    draft = art.new_draft()
    with cairn.init(project="two") as run, pytest.raises(InvalidInputError, match="project"):
        run.log_artifact(draft)


@SQLITE_AND_REMOTE
def test_aliases_and_tags_must_be_lists(tmp_path: Path) -> None:
    write(tmp_path / "a.txt", "a")
    with cairn.init(project="proj") as run:
        with pytest.raises(InvalidInputError, match="lists"):
            run.log_artifact(tmp_path / "a.txt", aliases="best")  # type: ignore[arg-type]
        with pytest.raises(InvalidInputError, match="lists"):
            run.log_artifact(tmp_path / "a.txt", tags="raw")  # type: ignore[arg-type]


@SQLITE_AND_REMOTE
def test_logging_and_downloading_leave_the_garbage_collector_as_they_found_it(
    tmp_path: Path,
) -> None:
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("a")
    threshold = gc.get_threshold()
    for enabled in (True, False):
        (gc.enable if enabled else gc.disable)()
        try:
            with cairn.init(project="p", job_type="t") as run:
                art = cairn.Artifact("d", type="dataset")
                art.add_dir(data)
                run.log_artifact(art)
                assert gc.isenabled() is enabled
                art.download(root=tmp_path / f"out-{enabled}")
                assert gc.isenabled() is enabled
                assert gc.get_threshold() == threshold
        finally:
            gc.enable()


@SQLITE_AND_REMOTE
def test_garbage_in_cycles_made_during_bulk_work_is_collected_during_it() -> None:
    """Around a log or a download the collector runs rarely, not never: a million-file log
    through a server makes garbage in cycles with every HTTP request (it kept them all)."""
    import weakref

    from cairn.core.gcpause import gc_relaxed

    class Node:
        me: object

    @gc_relaxed
    def bulk() -> bool:
        first = Node()
        first.me = first
        early = weakref.ref(first)
        del first
        for _ in range(400_000):
            node = Node()
            node.me = node
        return early() is None

    before = gc.get_threshold()
    assert bulk()
    assert gc.get_threshold() == before
