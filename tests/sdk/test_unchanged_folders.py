"""A folder of plain files that has not changed since a log stored it is taken whole by the
next log (objects/folders.py): no file of it is looked up or read again. Every change a user can
make to such a folder (a file edited, even with its modification time put back, one added, one
removed, one renamed) still makes the version it should, and a store that dropped objects since
(gc) or was made again at the same place is never trusted for what it no longer holds.

The folder records are the client's: the tables of changes run on SQLite and remote
(`SQLITE_AND_REMOTE`); the rest runs on embedded PostgreSQL too."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from sdk_helpers import SQLITE_AND_REMOTE, make_tree, store_dir, tree_of

import cairn
from cairn.errors import DownloadConflictError
from cairn.objects import folders, ingest, tree
from cairn.sdk.backend import get_backend, reset_backends

FILES = {f"{folder}/{i:03}.txt": f"{folder} {i}\n" for folder in ("a", "b", "c") for i in range(30)}


def _age(root: Path) -> None:
    """Put every file's modification time two minutes back: files written within the last
    second are not remembered (a write in the same timestamp tick could not be told)."""
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - 120_000_000_000))


def _log(root: Path) -> cairn.Artifact:
    art = cairn.Artifact("ds", type="dataset")
    art.add_dir(root)
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    return art


def _gc() -> int:
    """A real `cairn gc` (no grace period) of the store the SDK uses: the embedded one, or
    the server's (its folder and database); the objects it dropped."""
    from cairn.objects.gc import collect
    from cairn.objects.store import open_object_store
    from cairn.service.liveness import live_objects
    from cairn.service.sql import SqlRegistry

    backend = get_backend()
    if os.environ.get("CAIRN_URL"):  # through a server: gc runs where its store is
        store = open_object_store(store_dir(), cache_dir=store_dir().parent / "gc-cache")
        try:
            with SqlRegistry(os.environ["CAIRN_DATABASE_URL"]) as registry:
                return collect(
                    store,  # type: ignore[arg-type]
                    lambda: live_objects(registry),
                    grace_seconds=0,
                    dry_run=False,
                    settle_seconds=0,
                ).objects_dropped
        finally:
            store.close()
    return collect(
        backend.object_store,  # type: ignore[arg-type]
        lambda: live_objects(backend.registry),
        grace_seconds=0,
        dry_run=False,
        settle_seconds=0,
    ).objects_dropped


def _log_and_delete_another(tmp_path: Path) -> None:
    """Leave objects for gc to drop: a second artifact's only version, deleted."""
    other = make_tree(tmp_path / "other", {"o.txt": "other\n"})
    art = cairn.Artifact("other", type="dataset")
    art.add_dir(other)
    with cairn.init(project="proj") as run:
        run.log_artifact(art)
    art.delete(delete_aliases=True)
    get_backend().object_store.sync()


@pytest.fixture
def data(tmp_path: Path) -> Path:
    root = make_tree(tmp_path / "data", FILES)
    _age(root)
    return root


def test_an_unchanged_folder_is_taken_whole_and_the_version_is_the_same(
    data: Path, tmp_path: Path, backend_mode: str
) -> None:
    first = _log(data)
    assert first.stats.unchanged_folders == 0
    again = _log(data)
    assert again.digest == first.digest
    assert again.version == first.version  # the same version, not a new one
    assert again.stats.hashed_files == 0
    assert again.stats.files == len(FILES)
    assert again.stats.unchanged_folders == 3  # through a server too
    assert tree_of(again.download(root=tmp_path / "out")) == tree_of(data)


@SQLITE_AND_REMOTE
def test_a_relog_asks_the_store_about_its_folders_once_not_once_a_folder(
    tmp_path: Path, backend_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through a server each question is a request: a re-log of a dataset of many folders
    asks whether their trees are still stored all at once (a thousand folders were a
    thousand requests, 40% of a re-log), and still takes every one whole."""
    many = {f"d{folder:02}/{i}.txt": f"{folder} {i}\n" for folder in range(40) for i in range(3)}
    root = make_tree(tmp_path / "many", many)
    _age(root)
    first = _log(root)
    store_type = type(get_backend().object_store)
    asked: list[int] = []
    real_missing = store_type.missing

    def missing(self: object, digests: object) -> set[str]:
        wanted = list(digests)  # type: ignore[call-overload]
        asked.append(len(wanted))
        return real_missing(self, wanted)  # type: ignore[arg-type]

    monkeypatch.setattr(store_type, "missing", missing)
    again = _log(root)
    assert again.digest == first.digest
    assert again.stats.unchanged_folders == 40
    assert again.stats.hashed_files == 0
    assert len(asked) <= 3, asked  # not 40


@pytest.mark.parametrize(
    "change",
    ["edit", "edit-same-size-and-mtime", "add", "remove", "rename"],
)
@SQLITE_AND_REMOTE
def test_every_change_inside_a_folder_makes_the_right_version(
    data: Path, tmp_path: Path, change: str, backend_mode: str
) -> None:
    _log(data)
    _log(data)  # the folders are remembered now
    target = data / "b" / "007.txt"
    if change == "edit":
        target.write_text("edited, longer than before\n")
    elif change == "edit-same-size-and-mtime":
        st = target.stat()
        target.write_text("b 9\n")  # it held "b 7\n"
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # only the ctime tells
        assert target.stat().st_size == st.st_size
    elif change == "add":
        (data / "b" / "new.txt").write_text("new\n")
    elif change == "remove":
        target.unlink()
    else:
        target.rename(data / "b" / "renamed.txt")
    expected = tree_of(data)
    art = _log(data)
    assert art.version == "v1"
    assert art.file_count == len(expected)
    # a and c did not change: taken whole; b is looked at file by file
    assert art.stats.unchanged_folders == 2
    assert tree_of(art.download(root=tmp_path / "out")) == expected


def test_a_file_written_just_before_the_log_keeps_its_folder_from_being_remembered(
    data: Path, backend_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the window is one second; a minute here, so that a slow machine cannot make the log
    # commit after the file has aged out of it
    monkeypatch.setattr(ingest, "RACY_NS", 60_000_000_000)
    (data / "a" / "fresh.txt").write_text("written now\n")
    _log(data)
    again = _log(data)
    # a's fresh file could still change within its timestamp tick: a is looked at again
    assert again.stats.unchanged_folders == 2


def test_after_gc_dropped_objects_no_folder_is_trusted(
    data: Path, tmp_path: Path, backend_mode: str
) -> None:
    first = _log(data)
    _log_and_delete_another(tmp_path)  # gc's drops move the store's drop count
    assert _gc() > 0
    again = _log(data)
    assert again.digest == first.digest
    assert again.stats.unchanged_folders == 0  # every file's objects checked instead
    assert _log(data).stats.unchanged_folders == 3  # remembered again, with the new count
    assert tree_of(again.download(root=tmp_path / "out")) == tree_of(data)


def test_gc_dropping_objects_during_a_log_makes_it_look_at_every_file(
    data: Path, tmp_path: Path, backend_mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = _log(data)
    _log(data)
    _log_and_delete_another(tmp_path)
    take = ingest.Ingestor.take_folder
    ran: list[int] = []

    def take_then_gc(self: ingest.Ingestor, *args: object) -> object:
        taken = take(self, *args)  # type: ignore[arg-type]
        if not ran:  # a gc runs while this log is under way
            ran.append(_gc())
        return taken

    monkeypatch.setattr(ingest.Ingestor, "take_folder", take_then_gc)
    (data / "c" / "new.txt").write_text("new\n")
    again = _log(data)
    assert ran and ran[0] > 0
    assert again.version == "v1"
    assert again.stats.unchanged_folders == 0  # the log was done again, file by file
    assert again.digest != first.digest
    assert tree_of(again.download(root=tmp_path / "out")) == tree_of(data)


@pytest.mark.parametrize("backend_mode", ["sqlite"])
def test_a_store_made_again_at_the_same_place_is_not_trusted(
    data: Path, tmp_path: Path, backend_mode: str
) -> None:
    _log(data)
    _log(data)
    reset_backends()
    shutil.rmtree(store_dir())  # the hash cache (and the database) stay
    art = _log(data)
    assert art.stats.unchanged_folders == 0
    assert art.stats.hashed_files == 0  # file digests are still known; objects stored again
    assert tree_of(art.download(root=tmp_path / "out")) == tree_of(data)


def _spy_in_place(monkeypatch: pytest.MonkeyPatch) -> dict[str, bool]:
    """What each download decided about each folder: skipped whole (True) or walked."""
    seen: dict[str, bool] = {}
    check = folders.Downloaded.in_place

    def in_place(self: folders.Downloaded, path: str, entry: tree.Dir) -> bool:
        seen[path] = check(self, path, entry)
        return seen[path]

    monkeypatch.setattr(folders.Downloaded, "in_place", in_place)
    return seen


def test_a_download_again_skips_the_folders_it_left_in_place(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend_mode: str
) -> None:
    art = _log(data)
    out = tmp_path / "out"
    seen = _spy_in_place(monkeypatch)
    art.download(root=out)
    assert seen == {"a": False, "b": False, "c": False}
    seen.clear()
    assert art.download(root=out) == str(out)
    assert seen == {"a": True, "b": True, "c": True}
    assert tree_of(out) == tree_of(data)
    # the folder it was logged from holds the same files: nothing to do there either
    seen.clear()
    art.download(root=data)
    assert seen == {"a": True, "b": True, "c": True}
    assert tree_of(data) == tree_of(out)


@pytest.mark.parametrize("change", ["edit", "remove", "add", "replace-with-folder"])
@SQLITE_AND_REMOTE
def test_a_download_again_notices_every_change_in_a_skipped_folder(
    data: Path, tmp_path: Path, change: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    art = _log(data)
    out = tmp_path / "out"
    art.download(root=out)
    seen = _spy_in_place(monkeypatch)
    target = out / "b" / "007.txt"
    if change == "edit":
        target.write_text("b 9\n")  # same size; the download must not overwrite it silently
        with pytest.raises(DownloadConflictError) as info:
            art.download(root=out)
        assert info.value.conflicts == [("b/007.txt", "modified")]
        assert target.read_text() == "b 9\n"
        art.download(root=out, overwrite=True)
    elif change == "remove":
        target.unlink()
        art.download(root=out)
    elif change == "add":
        (out / "b" / "mine.txt").write_text("the user's own file\n")
        art.download(root=out)
        assert (out / "b" / "mine.txt").read_text() == "the user's own file\n"
        (out / "b" / "mine.txt").unlink()
    else:
        target.unlink()
        target.mkdir()
        with pytest.raises(DownloadConflictError):
            art.download(root=out)
        target.rmdir()
        art.download(root=out)
    assert seen["a"] and seen["c"] and not seen["b"]
    assert tree_of(out) == tree_of(data)
    seen.clear()
    art.download(root=out)  # b is recorded again now that it holds exactly its files
    assert seen == {"a": True, "b": True, "c": True}
