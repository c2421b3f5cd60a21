"""Downloads into a folder that does not exist yet: written whole in a hidden folder beside it,
then renamed into place (`Materializer._write_staged`)."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from test_materialize import files_in, log_version, random_bytes

from cairn.errors import DownloadConflictError
from cairn.objects import download_stage, materialize
from cairn.objects.hashcache import HashCache
from cairn.objects.materialize import Materializer, Wanted
from cairn.objects.packs.local import LocalPackStore


@pytest.fixture
def store(tmp_path: Path) -> Iterator[LocalPackStore]:
    s = LocalPackStore(tmp_path / "store")
    yield s
    s.close()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    c = HashCache(tmp_path / "cache" / "hashes.db")
    yield c
    c.close()


PLACE = Materializer._place  # the real one, whatever a test patched in since
CONTENT = {f"d{i % 7}/f{i:03}.bin": random_bytes(300 + i, i) for i in range(200)}
CONTENT["big.bin"] = random_bytes(3 << 20, "big")  # not read whole into memory


def hidden(dest: Path) -> list[Path]:
    """The hidden folders beside ``dest``."""
    return [p for p in dest.parent.iterdir() if p.name.startswith(f".{dest.name}.cairn-download-")]


def before_each_file(monkeypatch: pytest.MonkeyPatch, before: Callable[[Wanted], None]) -> None:
    """Call ``before`` as the download is about to write each file."""

    def hooked(self: Materializer, w: Wanted, dir_fd: int, new: bool, replace: bool) -> None:
        before(w)
        PLACE(self, w, dir_fd, new, replace)

    monkeypatch.setattr(Materializer, "_place", hooked)


def placed_calls(monkeypatch: pytest.MonkeyPatch, stop_after: int | None = None) -> list[str]:
    """Record each file the download writes; raise KeyboardInterrupt (a Ctrl-C) at the file
    after ``stop_after``."""
    calls: list[str] = []

    def counting(w: Wanted) -> None:
        if stop_after is not None and len(calls) >= stop_after:
            raise KeyboardInterrupt
        calls.append(w.path)

    before_each_file(monkeypatch, counting)
    monkeypatch.setattr(materialize, "BATCH", 16)  # many batches: the stop comes mid-way
    return calls


def test_a_new_folder_appears_only_once_every_file_is_in(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "out" / "ds"  # its parent does not exist either
    seen: list[bool] = []
    before_each_file(monkeypatch, lambda w: seen.append(os.path.lexists(dest)))
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert len(seen) == len(CONTENT) and not any(seen)
    assert files_in(dest) == CONTENT
    assert os.listdir(dest.parent) == ["ds"]  # no hidden folder left beside it
    # what it wrote is known: the next download into it rewrites nothing
    calls = placed_calls(monkeypatch)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert calls == []


def test_a_stopped_download_resumes_from_its_hidden_folder(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"
    placed_calls(monkeypatch, stop_after=70)
    with pytest.raises(KeyboardInterrupt):
        Materializer(store, cache, threads=1).materialize(wanted, dest, stage="k")
    assert not dest.exists()
    (stage,) = hidden(dest)
    left = files_in(stage)
    assert 0 < len(left) < len(CONTENT)
    assert all(data == CONTENT[p] for p, data in left.items())  # whole files only
    # a file half-written when the process died (kill -9), and a file of nobody's
    half = sorted(left)[0]
    (stage / half).write_bytes(CONTENT[half][:10])
    kept = {p: (stage / p).stat().st_ino for p in left if p != half}
    calls = placed_calls(monkeypatch)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert files_in(dest) == CONTENT
    assert not stage.exists()
    assert sorted(calls) == sorted(set(CONTENT) - set(kept))  # only what was missing
    assert {p: (dest / p).stat().st_ino for p in kept} == kept  # the rest was not rewritten


def test_a_download_of_other_files_removes_a_stopped_ones_hidden_folder(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    v0 = log_version(store, tmp_path, CONTENT)
    other = {"only.txt": b"v1\n", "d0/f000.bin": b"changed"}
    v1 = log_version(store, tmp_path, other)
    dest = tmp_path / "ds"
    placed_calls(monkeypatch, stop_after=40)
    with pytest.raises(KeyboardInterrupt):
        Materializer(store, cache, threads=1).materialize(v0, dest, stage="v0")
    assert len(hidden(dest)) == 1
    placed_calls(monkeypatch)
    Materializer(store, cache).materialize(v1, dest, stage="v1")
    assert files_in(dest) == other  # nothing of the stopped download came along
    assert not [n for n in os.listdir(tmp_path) if "cairn-download" in n]


def test_a_second_download_of_the_same_files_into_the_same_new_folder_is_refused(
    store: LocalPackStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"
    stage = download_stage.stage_of(dest, "k")
    stage.mkdir()
    held = os.open(stage, os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(held, fcntl.LOCK_EX)  # as a live download holds it
    try:
        with pytest.raises(DownloadConflictError, match=r"another download into .*ds is running"):
            Materializer(store, cache).materialize(wanted, dest, stage="k")
        assert not dest.exists()
        # a download of other files there goes ahead, and leaves the live one's folder alone
        Materializer(store, cache).materialize(wanted[:1], dest, stage="other")
        assert stage.is_dir() and files_in(dest) == {wanted[0].path: CONTENT[wanted[0].path]}
    finally:
        os.close(held)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert files_in(dest) == CONTENT


def test_a_folder_made_at_the_destination_meanwhile_is_left_alone(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"

    def user_makes_dest(w: Wanted) -> None:
        if not dest.exists():
            dest.mkdir()
            (dest / "notes.txt").write_text("mine")

    before_each_file(monkeypatch, user_makes_dest)
    with pytest.raises(DownloadConflictError, match="appeared while it was downloaded") as info:
        Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert "move" in str(info.value)
    assert files_in(dest) == {"notes.txt": b"mine"}
    # moved away, the next download takes the finished files from the hidden folder
    dest.rename(tmp_path / "mine")
    calls = placed_calls(monkeypatch)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert files_in(dest) == CONTENT and calls == []


def test_an_existing_folder_is_written_in_place_not_staged(
    store: LocalPackStore, cache: HashCache, tmp_path: Path
) -> None:
    """Only a folder that does not exist is staged: an existing one (a mount point, a folder
    with its own permissions) is never replaced."""
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"
    dest.mkdir(mode=0o750)
    inode = dest.stat().st_ino
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert dest.stat().st_ino == inode and (dest.stat().st_mode & 0o777) == 0o750
    assert files_in(dest) == CONTENT


def test_a_new_folder_with_a_name_at_the_limit_is_staged_too(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / ("é" * 127)  # 254 bytes: the hidden folder's name is shortened
    placed_calls(monkeypatch, stop_after=30)
    with pytest.raises(KeyboardInterrupt):
        Materializer(store, cache, threads=1).materialize(wanted, dest, stage="k")
    (stage,) = [p for p in tmp_path.iterdir() if "cairn-download" in p.name]
    assert len(stage.name.encode()) <= 255 and not dest.exists()
    calls = placed_calls(monkeypatch)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert files_in(dest) == CONTENT and len(calls) == len(CONTENT) - 30 and not stage.exists()


def test_an_empty_folder_made_at_the_destination_meanwhile_is_not_replaced(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"

    def user_makes_dest(w: Wanted) -> None:
        if not dest.exists():
            dest.mkdir(mode=0o700)

    before_each_file(monkeypatch, user_makes_dest)
    with pytest.raises(DownloadConflictError, match="was left alone"):
        Materializer(store, cache).materialize(wanted, dest, stage="k")
    inode = dest.stat().st_ino
    assert os.listdir(dest) == [] and (dest.stat().st_mode & 0o777) == 0o700
    # into the (existing, empty) folder, the next download writes in place, from the hidden one
    monkeypatch.setattr(Materializer, "_place", PLACE)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert files_in(dest) == CONTENT and dest.stat().st_ino == inode
    assert hidden(dest) == []  # of no use any more: removed


def test_only_hidden_folders_cairn_named_are_removed(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder of the user's whose name merely looks like a hidden download folder, and
    another user's, are never removed."""
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"
    mine = tmp_path / ".ds.cairn-download-old-backup"
    mine.mkdir()
    (mine / "keep.txt").write_text("mine")
    placed_calls(monkeypatch, stop_after=20)
    with pytest.raises(KeyboardInterrupt):
        Materializer(store, cache, threads=1).materialize(wanted, dest, stage="v0")
    placed_calls(monkeypatch)
    Materializer(store, cache).materialize(wanted[:3], dest, stage="v1")
    assert (mine / "keep.txt").read_text() == "mine"
    assert [p.name for p in hidden(dest)] == [mine.name]  # v0's stopped one was removed


def test_a_stopped_downloads_folder_goes_when_the_destination_is_made_another_way(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "ds"
    placed_calls(monkeypatch, stop_after=20)
    with pytest.raises(KeyboardInterrupt):
        Materializer(store, cache, threads=1).materialize(wanted, dest, stage="k")
    assert len(hidden(dest)) == 1
    dest.mkdir()  # the user made it; the next download writes there, in place
    placed_calls(monkeypatch)
    Materializer(store, cache).materialize(wanted, dest, stage="k")
    assert files_in(dest) == CONTENT and hidden(dest) == []


def test_a_destination_made_by_the_time_the_lock_is_held_is_written_in_place(
    tmp_path: Path,
) -> None:
    """Another download of the same files finished between the check and the lock: the
    hidden folder made for nothing is removed and the caller writes in place."""
    dest = tmp_path / "ds"
    stage = download_stage.stage_of(dest, "k")
    dest.mkdir()
    assert download_stage.lock(stage, dest) is None
    assert not stage.exists()


@pytest.mark.parametrize("name", ["data\udcff", "new/.."], ids=["not UTF-8", "dot-dot"])
def test_odd_destination_names(
    store: LocalPackStore, cache: HashCache, tmp_path: Path, name: str
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / name
    Materializer(store, cache).materialize(wanted, dest, stage="k")  # "new/..": tmp_path
    assert {p: d for p, d in files_in(dest).items() if p in CONTENT} == CONTENT
    assert not [p for p in tmp_path.rglob("*cairn-download*")]
