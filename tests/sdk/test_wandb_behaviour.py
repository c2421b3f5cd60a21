"""What a W&B user's artifact code relies on (issue 15): aliases set on a draft, `latest` in
the aliases asked for, and the other behaviours W&B documents for its public SDK.

What a draft does before it is logged runs on SQLite and remote (`SQLITE_AND_REMOTE`); lookups,
aliases, checkout, references and lineage run on embedded PostgreSQL too."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import pytest
from sdk_helpers import SQLITE_AND_REMOTE, make_tree, store_unchanged, tree_of, write

import cairn
from cairn.errors import (
    ArtifactStateError,
    FileChangedError,
    InvalidInputError,
    InvalidNameError,
    InvalidPathError,
    NotFoundError,
    RunFinishedError,
)


def _draft(tmp_path: Path, content: str = "rows", name: str = "ds") -> cairn.Artifact:
    art = cairn.Artifact(name, type="dataset")
    art.add_file(write(tmp_path / "src" / f"{content}.txt", content), name="data.txt")
    return art


@SQLITE_AND_REMOTE
def test_aliases_set_on_a_draft_are_applied(tmp_path: Path) -> None:
    art = _draft(tmp_path)
    art.aliases = ["best"]
    art.aliases.append("candidate")
    art.tags = ["raw"]
    with cairn.init(project="proj") as run:
        run.log_artifact(art, aliases=["prod"])
    assert art.aliases == ["latest", "best", "candidate", "prod"]
    assert cairn.Api("proj").artifact("ds:best").version == "v0"
    assert cairn.Api("proj").artifact("ds:candidate").tags == ["raw"]
    assert cairn.Api("proj").artifact("ds:prod").version == "v0"


@SQLITE_AND_REMOTE
def test_a_bad_alias_on_a_draft_is_refused_before_anything_is_logged(tmp_path: Path) -> None:
    art = _draft(tmp_path)
    art.aliases = ["v3"]
    with cairn.init(project="proj") as run, pytest.raises(InvalidNameError, match="'v3'"):
        run.log_artifact(art)
    assert art.is_draft
    assert cairn.Api("proj").projects() == [] or cairn.Api("proj").artifacts() == []


def test_latest_is_accepted_in_the_aliases(tmp_path: Path) -> None:
    with cairn.init(project="proj") as run:
        first = run.log_artifact(_draft(tmp_path, "one"), aliases=["latest", "best"])
        assert first.aliases == ["latest", "best"]
        second = _draft(tmp_path, "two")
        second.aliases = ["latest"]
        run.log_artifact(second, aliases=["latest"])
    assert second.aliases == ["latest"]
    assert cairn.Api("proj").artifact("ds:latest").version == "v1"
    assert cairn.Api("proj").artifact("ds:best").version == "v0"
    assert cairn.Api("proj").artifact("ds:v0").aliases == ["best"]


@SQLITE_AND_REMOTE
def test_the_same_file_added_twice_is_a_no_op(tmp_path: Path) -> None:
    src = write(tmp_path / "a.csv", "1,2\n")
    other = write(tmp_path / "other" / "a.csv", "3,4\n")
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(src)
    art.add_file(src)  # the same file at the same path
    art.add_file(tmp_path / "." / "a.csv")  # the same file by another spelling
    art.add_dir(tmp_path / "other", name="sub")
    art.add_dir(tmp_path / "other", name="sub")  # the same folder again
    with pytest.raises(InvalidPathError, match=r"two files at one path.*overwrite=True"):
        art.add_file(other)  # a different file at the same path
    art.add_file(other, name="sub/a.csv")  # the same file as add_dir put there
    assert [f.path for f in art.files()] == ["a.csv", "sub/a.csv"]
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    assert tree_of(art.download()) == {"a.csv": b"1,2\n", "sub/a.csv": b"3,4\n"}


@SQLITE_AND_REMOTE
def test_remove_takes_strings_paths_and_entries(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src", {"a.csv": "a", "b/c.csv": "c", "d.csv": "d", "e/f": "f"})
    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(root)
    art.remove("a.csv")
    art.remove(PurePosixPath("b"))
    art.remove(Path("e") / "f")
    art.remove(art.files(names=["d.csv"])[0])
    assert art.files() == []
    art.add_dir(root)
    entry = art.files()[0]
    with pytest.raises(InvalidPathError, match="absolute"):
        art.remove(Path("/etc/passwd"))
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    with pytest.raises(ArtifactStateError, match="new_draft"):
        art.remove(entry)


@SQLITE_AND_REMOTE
def test_a_file_changed_between_add_and_log_is_refused(tmp_path: Path) -> None:
    path = write(tmp_path / "data.csv", "1,2\n")
    art = cairn.Artifact("ds", type="dataset")
    art.add_file(path)
    art.add_dir(make_tree(tmp_path / "dir", {"x.txt": "x"}), name="dir")
    with art.new_file("notes.txt") as f:
        f.write("notes")
    write(path, "1,2\n3,4\n")  # rewritten after it was added
    with cairn.init(project="proj") as run:
        with (
            store_unchanged(),
            pytest.raises(FileChangedError, match="changed since it was added") as info,
        ):
            run.log_artifact(art)
        assert info.value.path == str(path)
        assert art.is_draft
        # the same size, another modification time: refused too
        os.utime(tmp_path / "dir" / "x.txt", ns=(1, 1))
        art.add_file(path)  # added again: its current content is what gets logged
        with pytest.raises(FileChangedError, match=r"x\.txt"):
            run.log_artifact(art)
        art.add_dir(tmp_path / "dir", name="dir")
        run.log_artifact(art)
    assert tree_of(art.download()) == {
        "data.csv": b"1,2\n3,4\n",
        "dir/x.txt": b"x",
        "notes.txt": b"notes",
    }


@SQLITE_AND_REMOTE
def test_download_returns_an_absolute_path_and_honours_cairn_artifact_dir(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with cairn.init(project="proj") as run:
        art = run.log_artifact(_draft(tmp_path))
    default = art.download()
    assert os.path.isabs(default)
    assert Path(default) == Path.cwd() / "artifacts" / "ds:v0"
    relative = art.download(root="out")
    assert relative == str(Path.cwd() / "out")
    assert os.path.isabs(art.get_entry("data.txt").download(root="one"))
    monkeypatch.setenv("CAIRN_ARTIFACT_DIR", str(tmp_path / "downloads"))
    assert art.download() == str(tmp_path / "downloads" / "ds:v0")
    assert tree_of(tmp_path / "downloads" / "ds:v0") == {"data.txt": b"rows"}
    assert art.file() == str(tmp_path / "downloads" / "ds:v0" / "data.txt")


def test_checkout_makes_the_folder_equal_the_version_and_touches_nothing_outside(
    tmp_path: Path,
) -> None:
    src = make_tree(tmp_path / "src", {"keep.txt": "keep", "sub/b.txt": "b"})
    with cairn.init(project="proj") as run:
        art = cairn.Artifact("ds", type="dataset")
        art.add_dir(src)
        run.log_artifact(art)
    outside = make_tree(tmp_path / "outside", {"precious.txt": "mine", "sub/x.txt": "x"})
    root = make_tree(
        tmp_path / "root",
        {"keep.txt": "changed", "extra.txt": "extra", "old/deep/y.txt": "y", "sub/c.txt": "c"},
    )
    os.symlink(outside, root / "link-to-folder")
    os.symlink(outside / "precious.txt", root / "link-to-file")
    os.symlink(outside / "sub", root / "old" / "inner-link")
    returned = art.checkout(root)
    assert returned == str(root)
    assert tree_of(root) == {"keep.txt": b"keep", "sub/b.txt": b"b"}
    assert sorted(p.name for p in root.iterdir()) == ["keep.txt", "sub"]
    assert tree_of(outside) == {"precious.txt": b"mine", "sub/x.txt": b"x"}
    art.verify(root)
    # into a folder that does not exist yet, and relative to the working directory
    assert art.checkout("fresh") == str(Path.cwd() / "fresh")
    assert tree_of("fresh") == {"keep.txt": b"keep", "sub/b.txt": b"b"}


def test_lookups_by_path_names_and_update_time(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "src", {"a.csv": "a", "b/c.csv": "cc", "d.csv": "ddd"})
    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(root)
    assert [f.path for f in art.files(names=["d.csv", "a.csv", "nope"])] == ["a.csv", "d.csv"]
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    entry = art["b/c.csv"]
    assert (entry.path, entry.size) == ("b/c.csv", 2)
    assert entry.content_hash == entry.digest and not entry.is_reference
    with pytest.raises(NotFoundError, match=r"no file 'nope\.csv'"):
        art["nope.csv"]
    assert [f.path for f in art.files(names=["d.csv", "b/c.csv", "b", "zz"])] == [
        "b/c.csv",
        "d.csv",
    ]
    with pytest.raises(InvalidInputError, match="list of paths"):
        art.files(names="a.csv")  # type: ignore[arg-type]
    assert art.updated_at == art.created_at
    art.description = "edited"
    art.save()
    stored = cairn.Api("proj").artifact("ds:v0")
    assert stored.updated_at > stored.created_at
    assert stored.updated_at == stored.history()[-1].at


@SQLITE_AND_REMOTE
def test_save_on_a_draft_logs_it(tmp_path: Path) -> None:
    alone = _draft(tmp_path, "alone")
    alone.aliases = ["best"]
    alone.save()  # no run: a run of its own
    assert alone.version == "v0" and alone.aliases == ["latest", "best"]
    own = alone.logged_by()
    assert own is not None and own.job_type == "auto" and own.state == "finished"
    assert cairn.current_run() is None
    with cairn.init(project="default", job_type="train") as run:
        inside = _draft(tmp_path, "inside")
        inside.save()
        producer = inside.logged_by()
        assert producer is not None and producer.id == run.id
    assert inside.version == "v1"


@SQLITE_AND_REMOTE
def test_use_artifact_on_a_draft_logs_it_then_uses_it(tmp_path: Path) -> None:
    with cairn.init(project="proj", job_type="train") as run:
        draft = _draft(tmp_path, "input")
        used = run.use_artifact(draft)
        assert not draft.is_draft
        assert used.version == "v0"
    assert [a.qualified_name for a in run.used_artifacts()] == ["proj/ds:v0"]
    assert run.logged_artifacts() == []
    assert draft.logged_by() is None
    assert [r.id for r in draft.used_by()] == [run.id]


def test_an_incremental_draft_starts_from_the_latest_version(tmp_path: Path) -> None:
    root = make_tree(tmp_path / "v0", {"a.csv": "a", "b.csv": "b", "c/d.csv": "d"})
    first = cairn.Artifact("ds", type="dataset", incremental=True)  # nothing logged yet
    assert first.files() == []
    first.add_dir(root)
    with cairn.init(project="proj") as run:
        run.log_artifact(first)
        more = cairn.Artifact("ds", type="dataset", incremental=True)
        assert [f.path for f in more.files()] == ["a.csv", "b.csv", "c/d.csv"]
        more.add_file(write(tmp_path / "new.csv", "new"))
        more.add_file(write(tmp_path / "b2.csv", "b2"), name="b.csv", overwrite=True)
        more.remove("c")
        run.log_artifact(more)
        with pytest.raises(InvalidNameError, match="type='dataset'"):
            cairn.Artifact("ds", type="model", incremental=True)
    assert more.version == "v1"
    assert tree_of(more.download()) == {"a.csv": b"a", "b.csv": b"b2", "new.csv": b"new"}
    assert tree_of(first.download()) == {"a.csv": b"a", "b.csv": b"b", "c/d.csv": b"d"}


def test_log_artifact_with_a_uri_logs_a_reference(tmp_path: Path) -> None:
    folder = make_tree(tmp_path / "shared" / "images", {"1.png": "one", "2.png": "two"})
    with cairn.init(project="proj") as run:
        art = run.log_artifact(folder.as_uri())
        named = run.log_artifact((folder / "1.png").as_uri(), name="first", type="image")
    assert art.name == "images" and art.type == "dataset"
    assert [(f.path, f.ref) for f in art.files()] == [
        ("1.png", (folder / "1.png").as_uri()),
        ("2.png", (folder / "2.png").as_uri()),
    ]
    assert all(f.is_reference and f.content_hash for f in art.files())
    assert (named.name, named.type) == ("first", "image")
    assert tree_of(named.download()) == {"1.png": b"one"}


def test_lineage_can_be_added_to_a_finished_run(tmp_path: Path) -> None:
    with cairn.init(project="proj", job_type="prep") as run:
        pass
    with cairn.init(project="proj") as other:
        source = other.log_artifact(_draft(tmp_path, "source", name="source"))
    assert cairn.Api("proj").run(run.id).state == "finished"
    view = cairn.Api("proj").run(run.id)
    view.use_artifact("source:latest")
    out = view.log_artifact(_draft(tmp_path, "after"))
    assert out.version == "v0"
    producer = out.logged_by()
    assert producer is not None and producer.id == run.id
    assert [r.id for r in source.used_by()] == [run.id]
    assert [a.name for a in cairn.Api("proj").run(run.id).logged_artifacts()] == ["ds"]
    # the process's own handle on a finished run still refuses
    with pytest.raises(RunFinishedError, match="finished"):
        run.log_artifact(_draft(tmp_path, "late"))
