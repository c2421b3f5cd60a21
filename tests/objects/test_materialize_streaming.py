"""Downloads of many files plan and write a batch at a time (issue 12): what they hold does not
grow with the version, yet a conflict anywhere is refused before anything is written."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from cairn.core.digest import hash_bytes
from cairn.errors import DownloadConflictError, InvalidPathError
from cairn.objects import materialize
from cairn.objects.hashcache import HashCache
from cairn.objects.materialize import MODIFIED, Materializer, Wanted
from cairn.objects.packs.local import LocalPackStore
from cairn.objects.store import ObjectStore

FILES = 3_000  # with BATCH lowered to 100 below: 30 batches
BATCH = 100


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ObjectStore]:
    packed = LocalPackStore(tmp_path / "store")
    yield packed
    packed.close()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    c = HashCache(tmp_path / "cache" / "hashes.db")
    yield c
    c.close()


@pytest.fixture(autouse=True)
def small_batches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(materialize, "BATCH", BATCH)


def one_blob(store: ObjectStore, data: bytes) -> Wanted:
    digest = hash_bytes(data)
    store.put(digest, data)
    store.sync()
    return Wanted("x", digest, len(data), None)


def version(blob: Wanted, n: int = FILES) -> list[Wanted]:
    """``n`` files in folders of 250 (and one deeper), in path order, all of one blob."""
    out = [Wanted(f"d{i // 250:03}/f{i:05}.bin", blob.digest, blob.size, None) for i in range(n)]
    out.append(Wanted("d999/deeper/still/last.bin", blob.digest, blob.size, None))
    return sorted(out, key=lambda w: w.path)


def contents(dest: Path) -> dict[str, bytes]:
    out = {}
    for folder, _dirs, files in os.walk(dest):
        for name in files:
            path = os.path.join(folder, name)
            out[os.path.relpath(path, dest)] = Path(path).read_bytes()
    return out


class Walks:
    """A version handed over as a function that walks it afresh (as the SDK does), counting
    the walks and, while walking, how far ahead of the files placed it has gone."""

    def __init__(self, files: list[Wanted], placed: list[int]) -> None:
        self.files = files
        self.placed = placed
        self.walks = 0
        self.ahead = 0

    def __call__(self) -> Iterator[Wanted]:
        self.walks += 1
        for i, w in enumerate(self.files):
            self.ahead = max(self.ahead, i - self.placed[0])
            yield w


def test_a_download_walks_the_version_a_batch_at_a_time(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    blob = one_blob(store, b"payload\n")
    files = version(blob)
    placed = [0]

    def progress(n: int, _nbytes: int) -> None:
        placed[0] += n

    walks = Walks(files, placed)
    dest = tmp_path / "download"
    Materializer(store, cache, progress=progress).materialize(walks, dest)
    assert placed[0] == len(files)
    assert walks.walks == 1  # an empty folder: nothing can be in the way, no check pass
    # the walk never ran more than a batch (and the one being read) ahead of the writes
    assert walks.ahead <= 2 * BATCH
    assert contents(dest) == {w.path: b"payload\n" for w in files}

    # again: a check pass finds every file in place, and nothing is written
    before = {p: (dest / p).stat().st_ino for p in contents(dest)}
    placed[0] = 0
    again = Walks(files, placed)
    Materializer(store, cache, progress=progress).materialize(again, dest)
    assert again.walks == 1 and placed[0] == len(files)
    assert {p: (dest / p).stat().st_ino for p in before} == before


@pytest.mark.parametrize("modified", [1, 45])
def test_a_conflict_anywhere_among_many_files_is_refused_before_anything_is_written(
    store: ObjectStore, cache: HashCache, tmp_path: Path, modified: int
) -> None:
    v0 = version(one_blob(store, b"v0\n"))
    v1 = version(one_blob(store, b"v1\n"))
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(v0, dest)
    # the user edits files in the last batches: far past the first batches' writes
    edited = [w.path for w in v0[-modified:]]
    for path in edited:
        (dest / path).write_bytes(b"mine\n")
    walks = Walks(v1, [0])
    with pytest.raises(DownloadConflictError) as info:
        Materializer(store, cache).materialize(walks, dest)
    assert walks.walks == 1  # refused by the check, before the walk that writes
    assert info.value.conflicts == [(p, MODIFIED) for p in edited]
    message = str(info.value)
    assert f"{modified} path" in message and "nothing was written" in message
    assert message.count(": modified") == min(modified, 20)  # listed up to 20, all counted
    if modified > 20:
        assert f"and {modified - 20} more" in message
    expected = {w.path: b"v0\n" for w in v0} | {p: b"mine\n" for p in edited}
    assert contents(dest) == expected  # nothing written at all

    # with overwrite, everything is replaced, the edits too
    Materializer(store, cache).materialize(v1, dest, overwrite=True)
    assert contents(dest) == {w.path: b"v1\n" for w in v1}


def test_a_symlinked_folder_late_in_the_version_is_refused_before_anything_is_written(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    v0 = version(one_blob(store, b"v0\n"))
    v1 = version(one_blob(store, b"v1\n"))
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(v0, dest)
    outside = tmp_path / "outside"
    outside.mkdir()
    (dest / "d999" / "deeper" / "still" / "last.bin").unlink()
    (dest / "d999" / "deeper" / "still").rmdir()
    (dest / "d999" / "deeper" / "still").symlink_to(outside)
    with pytest.raises(DownloadConflictError) as info:
        Materializer(store, cache).materialize(v1, dest)
    assert info.value.conflicts == [("d999/deeper/still", "symlink")]
    assert (dest / "d000" / "f00000.bin").read_bytes() == b"v0\n"  # the first batch: untouched
    Materializer(store, cache).materialize(v1, dest, overwrite=True)
    assert list(outside.iterdir()) == []  # never written through
    assert (dest / "d999" / "deeper" / "still" / "last.bin").read_bytes() == b"v1\n"


def test_a_bad_path_late_in_the_version_writes_nothing_outside(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    blob = one_blob(store, b"x\n")
    files = [*version(blob), Wanted("zz/../../escaped.bin", blob.digest, blob.size, None)]
    dest = tmp_path / "download"
    with pytest.raises(InvalidPathError):
        Materializer(store, cache).materialize(files, dest)
    assert not (tmp_path / "escaped.bin").exists()


def test_new_files_leave_no_temp_name_behind(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    """A file whose name is free is written unnamed and linked once verified; one replacing
    another goes through a temp name: neither leaves a temp file."""
    v0 = version(one_blob(store, b"v0\n"), 300)
    v1 = version(one_blob(store, b"v1\n"), 600)
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(v0, dest)
    Materializer(store, cache).materialize(v1, dest)
    assert contents(dest) == {w.path: b"v1\n" for w in v1}  # no temp names among them
