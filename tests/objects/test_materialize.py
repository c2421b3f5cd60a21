"""Downloads: a version's files written into a folder, byte for byte, verified; a second
download leaves correct files alone; a damaged store never leaves a damaged file behind."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from cairn.errors import (
    DownloadConflictError,
    IntegrityError,
    InvalidPathError,
    ObjectNotFoundError,
)
from cairn.objects import tree
from cairn.objects.chunking import CHUNK_THRESHOLD
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import Ingestor, StagedFile
from cairn.objects.keyed import KeyedObjectStore
from cairn.objects.materialize import FILE, FOLDER, MODIFIED, SYMLINK, Materializer, Wanted
from cairn.objects.packs.local import LocalPackStore
from cairn.objects.store import ObjectStore
from cairn.storage.local import LocalStorage

MiB = 1 << 20


def random_bytes(n: int, seed: int | str = 0) -> bytes:
    return blake3.blake3(f"seed {seed}".encode()).digest(n)


@pytest.fixture(params=["objects", "packs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Both local object stores: one file per object, and pack files with an index."""
    if request.param == "objects":
        yield KeyedObjectStore(LocalStorage(tmp_path / "store"))
    else:
        packed = LocalPackStore(tmp_path / "store")
        yield packed
        packed.close()


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    c = HashCache(tmp_path / "cache" / "hashes.db")
    yield c
    c.close()


CONTENT = {
    "README.md": b"# a dataset\n",
    "empty.txt": b"",
    "train/part-0.csv": random_bytes(100_000, 0),
    "train/deep/er/part-1.csv": random_bytes(5000, 1),
    "model/weights.bin": random_bytes(CHUNK_THRESHOLD + 3 * MiB + 17, "w"),
    "model/copy-of-weights.bin": random_bytes(CHUNK_THRESHOLD + 3 * MiB + 17, "w"),
    "model/other.bin": random_bytes(2 * CHUNK_THRESHOLD, "o"),
}


def log_version(store: ObjectStore, tmp_path: Path, content: dict[str, bytes]) -> list[Wanted]:
    """Log files the way the SDK does and return what a download of the version asks for."""
    src = tmp_path / "src"
    staged = []
    for i, (path, data) in enumerate(content.items()):
        f = src / str(i)
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(data)
        staged.append(StagedFile(path, f))
    ingestor = Ingestor(store, None)
    built = tree.build(ingestor.hash_files(staged))
    ingestor.store_tree(built)
    store.sync()
    return [
        Wanted(p, e.digest, e.size, e.chunks)
        for p, e in tree.iter_files(built.root, store.get)
        if isinstance(e, tree.File)
    ]


def files_in(folder: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(folder)): p.read_bytes()
        for p in sorted(folder.rglob("*"))
        if p.is_file() or p.is_symlink()
    }


def inodes(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {
        str(p.relative_to(folder)): (p.stat().st_ino, p.stat().st_mtime_ns, p.stat().st_ctime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    }


def corrupt(store_root: Path, content: bytes) -> None:
    """Flip one byte of ``content`` where the store keeps it on disk (an object file, or its
    place in a pack), as a failing disk would."""
    found = 0
    for f in store_root.rglob("*"):
        if not f.is_file() or f.suffix in (".db", ".db-wal", ".db-shm"):
            continue
        data = f.read_bytes()
        at = data.find(content)
        if at < 0:
            continue
        f.chmod(0o644)
        with open(f, "r+b") as out:
            out.seek(at + len(content) // 2)
            out.write(bytes([data[at + len(content) // 2] ^ 0xFF]))
        found += 1
    assert found, "the content is not on disk in the store"


def test_download_into_a_fresh_folder_is_byte_identical(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    assert any(w.chunks for w in wanted) and any(w.chunks is None for w in wanted)
    done: list[tuple[int, int]] = []
    dest = tmp_path / "download"
    Materializer(store, cache, progress=lambda f, n: done.append((f, n))).materialize(wanted, dest)
    assert files_in(dest) == CONTENT  # nothing missing, nothing extra (no temp files)
    assert sum(f for f, _ in done) == len(CONTENT)
    assert sum(n for _, n in done) == sum(len(d) for d in CONTENT.values())


def test_download_without_a_hash_cache(store: ObjectStore, tmp_path: Path) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "download"
    Materializer(store, None).materialize(wanted, dest)
    Materializer(store, None).materialize(wanted, dest)
    assert files_in(dest) == CONTENT


def test_downloaded_files_are_writable_and_separate_from_the_store(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(wanted, dest)
    for path in CONTENT:
        st = (dest / path).stat()
        assert st.st_mode & stat.S_IWUSR
        assert st.st_nlink == 1  # a file of its own, not a link into the store
    # editing a downloaded file changes nothing in the store
    with open(dest / "train/part-0.csv", "r+b") as f:
        f.write(b"edited")
    with open(dest / "model/weights.bin", "r+b") as f:
        f.write(b"edited")
    other = tmp_path / "again"
    Materializer(store, cache).materialize(wanted, other)
    assert files_in(other) == CONTENT


def test_second_download_leaves_correct_files_alone(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(wanted, dest)
    before = inodes(dest)
    done: list[int] = []
    Materializer(store, cache, progress=lambda f, n: done.append(f)).materialize(wanted, dest)
    assert inodes(dest) == before  # same inode, mtime and ctime: not written, not replaced
    assert sum(done) == len(CONTENT)
    assert files_in(dest) == CONTENT


def test_a_modified_file_is_listed_and_kept_unless_overwrite(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(wanted, dest)
    before = inodes(dest)
    # three files changed by the user later on: appended to, rewritten at the same size, deleted
    with open(dest / "README.md", "ab") as f:
        f.write(b"more\n")
    edited = dest / "train/part-0.csv"
    st = edited.stat()
    with open(edited, "r+b") as f:
        f.write(b"XXXX")
    os.utime(edited, ns=(st.st_atime_ns, st.st_mtime_ns))  # even with its mtime put back
    (dest / "model/other.bin").unlink()
    mine = files_in(dest)
    with pytest.raises(DownloadConflictError) as info:
        Materializer(store, cache).materialize(wanted, dest)
    assert sorted(info.value.conflicts) == [("README.md", MODIFIED), ("train/part-0.csv", MODIFIED)]
    assert "README.md: modified" in str(info.value) and "train/part-0.csv" in str(info.value)
    assert "overwrite=True" in str(info.value)
    assert files_in(dest) == mine  # nothing written, not even the deleted file
    Materializer(store, cache).materialize(wanted, dest, overwrite=True)
    assert files_in(dest) == CONTENT
    after = inodes(dest)
    untouched = set(CONTENT) - {"README.md", "train/part-0.csv", "model/other.bin"}
    assert {p: after[p] for p in untouched} == {p: before[p] for p in untouched}


def test_an_earlier_download_is_replaced_by_another_version(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    """Files Cairn wrote and nobody changed since are not the user's: a download of another
    version replaces them without asking, also a file where the new version has a folder."""
    v0 = log_version(store, tmp_path, {"a.txt": b"v0", "b.txt": b"same", "c": b"a file in v0"})
    v1 = log_version(store, tmp_path, {"a.txt": b"v1!", "b.txt": b"same", "c/d.txt": b"folder"})
    dest = tmp_path / "download"
    Materializer(store, cache).materialize(v0, dest)
    Materializer(store, cache).materialize(v1, dest)
    assert files_in(dest) == {"a.txt": b"v1!", "b.txt": b"same", "c/d.txt": b"folder"}


def test_without_a_hash_cache_a_differing_file_counts_as_modified(
    store: ObjectStore, tmp_path: Path
) -> None:
    v0 = log_version(store, tmp_path, {"a.txt": b"v0"})
    v1 = log_version(store, tmp_path, {"a.txt": b"v1"})
    dest = tmp_path / "download"
    Materializer(store, None).materialize(v0, dest)
    with pytest.raises(DownloadConflictError, match=r"a\.txt: modified"):
        Materializer(store, None).materialize(v1, dest)
    Materializer(store, None).materialize(v1, dest, overwrite=True)
    assert files_in(dest) == {"a.txt": b"v1"}


def test_a_symlink_in_place_of_a_file_is_replaced_never_written_through(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, {"a.txt": b"from the store"})
    dest = tmp_path / "download"
    dest.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"the user's own file")
    (dest / "a.txt").symlink_to(outside)
    with pytest.raises(DownloadConflictError, match=r"a\.txt: a symlink") as info:
        Materializer(store, cache).materialize(wanted, dest)
    assert info.value.conflicts == [("a.txt", SYMLINK)]
    assert (dest / "a.txt").is_symlink()
    Materializer(store, cache).materialize(wanted, dest, overwrite=True)
    assert not (dest / "a.txt").is_symlink()
    assert (dest / "a.txt").read_bytes() == b"from the store"
    assert outside.read_bytes() == b"the user's own file"


def test_a_symlinked_folder_inside_the_target_is_never_written_through(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, CONTENT)
    dest = tmp_path / "download"
    dest.mkdir()
    outside = tmp_path / "elsewhere"
    (outside / "deep").mkdir(parents=True)
    (outside / "part-0.csv").write_bytes(b"the user's own file, outside the target")
    (dest / "train").symlink_to(outside, target_is_directory=True)
    (dest / "model").symlink_to("../elsewhere/deep", target_is_directory=True)  # relative
    before = files_in(outside)
    with pytest.raises(DownloadConflictError) as info:
        Materializer(store, cache).materialize(wanted, dest)
    assert sorted(info.value.conflicts) == [("model", SYMLINK), ("train", SYMLINK)]
    assert files_in(outside) == before  # nothing written outside, not even new files
    assert not (dest / "README.md").exists()  # nor inside: the download wrote nothing
    Materializer(store, cache).materialize(wanted, dest, overwrite=True)
    assert files_in(outside) == before
    assert not (dest / "train").is_symlink() and not (dest / "model").is_symlink()
    assert files_in(dest) == CONTENT


def test_clashes_are_typed_errors(store: ObjectStore, cache: HashCache, tmp_path: Path) -> None:
    wanted = log_version(store, tmp_path, {"a.txt": b"a file", "b/c.txt": b"in a folder"})
    dest = tmp_path / "download"
    # a folder with content where the version has a file; a user's file where it has a folder
    (dest / "a.txt").mkdir(parents=True)
    (dest / "a.txt" / "notes").write_bytes(b"mine")
    (dest / "b").write_bytes(b"a file of the user's")
    with pytest.raises(DownloadConflictError) as info:
        Materializer(store, cache).materialize(wanted, dest)
    assert sorted(info.value.conflicts) == [("a.txt", FOLDER), ("b", FILE)]
    assert "a.txt: a folder with content where the version has a file" in str(info.value)
    assert "b: a file where the version has a folder" in str(info.value)
    # overwrite replaces the file, never a folder with content
    with pytest.raises(DownloadConflictError, match="never removes a folder") as again:
        Materializer(store, cache).materialize(wanted, dest, overwrite=True)
    assert again.value.conflicts == [("a.txt", FOLDER)]
    assert (dest / "a.txt" / "notes").read_bytes() == b"mine"
    assert (dest / "b").read_bytes() == b"a file of the user's"
    (dest / "a.txt" / "notes").unlink()  # an empty folder is replaced with overwrite
    Materializer(store, cache).materialize(wanted, dest, overwrite=True)
    assert files_in(dest) == {"a.txt": b"a file", "b/c.txt": b"in a folder"}
    # the target itself a file
    with pytest.raises(DownloadConflictError, match="is a file, not a folder"):
        Materializer(store, cache).materialize(wanted, dest / "a.txt")


# a file read whole and hashed in memory (up to 1 MiB), one copied in the kernel and read back,
# and a chunked one
_CORRUPTIBLE = {**CONTENT, "model/head.bin": random_bytes(2 * MiB + 5, "h")}


@pytest.mark.parametrize("which", ["train/part-0.csv", "model/head.bin", "model/weights.bin"])
def test_a_corrupt_object_is_detected_and_leaves_no_file(
    store: ObjectStore, cache: HashCache, tmp_path: Path, which: str
) -> None:
    wanted = log_version(store, tmp_path, {which: _CORRUPTIBLE[which], "ok.txt": b"fine"})
    # a small file's one object, or one chunk in the middle of a chunked file
    data = _CORRUPTIBLE[which]
    corrupt(
        tmp_path / "store", data if len(data) < CHUNK_THRESHOLD else data[6 * MiB : 6 * MiB + 4096]
    )
    dest = tmp_path / "download"
    with pytest.raises(IntegrityError) as info:
        Materializer(store, cache).materialize([w for w in wanted if w.path == which], dest)
    assert which in str(info.value)
    assert files_in(dest) == {}  # no corrupt file, no temp file
    # nor is a bad file put over a good one already there
    good = tmp_path / "good"
    good.mkdir(parents=True)
    (good / which).parent.mkdir(parents=True, exist_ok=True)
    (good / which).write_bytes(b"the user's copy")
    with pytest.raises(DownloadConflictError):
        Materializer(store, cache).materialize(wanted, good)
    # a pack store forgot the damaged object when it found it (a re-log stores it again):
    # now it is missing; one key per object keeps reporting it corrupt
    again = ObjectNotFoundError if isinstance(store, LocalPackStore) else IntegrityError
    with pytest.raises(again):
        Materializer(store, cache).materialize(wanted, good, overwrite=True)
    assert (good / which).read_bytes() == b"the user's copy"
    assert not [p for p in files_in(good) if "cairn-tmp" in p]


def test_a_missing_object_is_reported_and_leaves_no_file(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, {"a.txt": b"to be lost"})
    store.delete(wanted[0].digest)
    store.sync()
    dest = tmp_path / "download"
    with pytest.raises(ObjectNotFoundError):
        Materializer(store, cache).materialize(wanted, dest)
    assert files_in(dest) == {}


@pytest.mark.parametrize(
    "bad", ["../escaped.txt", "a/../../escaped.txt", "/tmp/escaped.txt", "a//b"]
)
def test_paths_cannot_leave_the_destination(
    store: ObjectStore, cache: HashCache, tmp_path: Path, bad: str
) -> None:
    [w] = log_version(store, tmp_path, {"a.txt": b"payload"})
    dest = tmp_path / "sub" / "download"
    with pytest.raises(InvalidPathError):
        Materializer(store, cache).materialize([Wanted(bad, w.digest, w.size, w.chunks)], dest)
    assert not (tmp_path / "sub" / "escaped.txt").exists()
    assert not (tmp_path / "escaped.txt").exists()
    assert not Path("/tmp/escaped.txt").exists()


# -- a download killed with kill -9, and a disk that fills up ------------------------------

_SLOW_DOWNLOAD = """
import json, os, sys, time
from pathlib import Path
from cairn.objects.hashcache import HashCache
from cairn.objects.materialize import Materializer, Wanted
from cairn.objects.packs.local import LocalPackStore

store, cache, dest, wanted, ready = sys.argv[1:6]
object_store = LocalPackStore(Path(store))
real = object_store.read_into
calls = 0

def slow_read_into(digest, fd, offset):  # the download itself is real; it is only slowed
    global calls
    n = real(digest, fd, offset)
    calls += 1
    if calls == 2:  # a chunked file is half written to its temp file
        Path(ready).write_text("ready")
        time.sleep(600)
    return n

object_store.read_into = slow_read_into
wanted = [Wanted(*w) for w in json.loads(wanted)]
Materializer(object_store, HashCache(Path(cache)), threads=1).materialize(wanted, Path(dest))
"""


def test_a_download_killed_with_kill_9_leaves_nothing_the_next_one_keeps(tmp_path: Path) -> None:
    import json
    import signal
    import subprocess
    import sys
    import time

    store = LocalPackStore(tmp_path / "store")
    big = random_bytes(CHUNK_THRESHOLD + 4 * MiB, "big")
    v0 = log_version(store, tmp_path, {"big.bin": big[::-1], "small.txt": b"v0"})
    v1 = log_version(store, tmp_path, {"big.bin": big, "new.bin": big[1:], "small.txt": b"v1"})
    store.close()
    assert any(w.chunks for w in v1)
    dest = tmp_path / "download"
    cache_path = tmp_path / "cache" / "hashes.db"
    cache = HashCache(cache_path)
    Materializer(LocalPackStore(tmp_path / "store"), cache).materialize(v0, dest)
    ready = tmp_path / "ready"
    wanted = json.dumps([[w.path, w.digest, w.size, w.chunks] for w in v1])
    args = [str(tmp_path / "store"), str(cache_path), str(dest), wanted, str(ready)]
    child = subprocess.Popen([sys.executable, "-c", _SLOW_DOWNLOAD, *args])
    try:
        deadline = time.monotonic() + 120
        while not ready.exists():
            assert child.poll() is None, "the download ended before it was killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
        os.kill(child.pid, signal.SIGKILL)
    finally:
        child.kill()
        child.wait()
    left = files_in(dest)
    temps = [p for p in left if p.endswith(".cairn-tmp")]
    assert temps, "the kill should have left the half-written temp file"
    # no file under its own name is partial: each is v0's or v1's, whole
    versions = {"big.bin": (big[::-1], big), "new.bin": (big[1:],), "small.txt": (b"v0", b"v1")}
    for path, data in left.items():
        if path not in temps:
            assert data in versions[path], path
    # the next download removes the dead download's temp file and completes
    store = LocalPackStore(tmp_path / "store")
    Materializer(store, cache).materialize(v1, dest)
    assert files_in(dest) == {"big.bin": big, "new.bin": big[1:], "small.txt": b"v1"}
    store.close()
    cache.close()


def test_a_temp_file_being_written_by_a_live_download_is_left_alone(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    from cairn.objects.materialize import open_tmp, remove_stale_tmp

    dest = tmp_path / "download"
    dest.mkdir()
    fd, tmp = open_tmp(None, str(dest / "a.txt"))  # locked, as a live download's are
    try:
        assert remove_stale_tmp(dest) == 0
        wanted = log_version(store, tmp_path, {"a.txt": b"content"})
        Materializer(store, cache).materialize(wanted, dest)
        assert Path(tmp).exists()
    finally:
        os.close(fd)
    assert remove_stale_tmp(dest) == 1  # its writer is gone
    assert files_in(dest) == {"a.txt": b"content"}


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 16 MiB tmpfs of its own (root only: CI runs as root; elsewhere CAIRN_REQUIRE_ALL
    turns the skip into a failure)."""
    import subprocess

    mount = tmp_path / "small-disk"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", str(mount)],
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:  # the rule of require() in tests/conftest.py
        why = f"cannot mount a tmpfs (needs root): {done.stderr.strip()}"
        if os.environ.get("CAIRN_REQUIRE_ALL") == "1":
            pytest.fail(f"required test dependency missing: {why}", pytrace=False)
        pytest.skip(why)
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.parametrize("staged", [False, True], ids=["in place", "staged"])
@pytest.mark.parametrize("fill", ["chunked", "many small"])
def test_a_full_disk_is_a_clear_error_and_leaves_no_partial_file(
    store: ObjectStore,
    cache: HashCache,
    tmp_path: Path,
    small_disk: Path,
    fill: str,
    staged: bool,
) -> None:
    """In place: the files written so far are whole. Staged (a new folder): the folder is not
    made at all, the files so far wait in the hidden folder, and the next try uses them."""
    from cairn.errors import DiskFullError

    if fill == "chunked":
        content = {"big.bin": random_bytes(CHUNK_THRESHOLD + 6 * MiB, "big"), "a.txt": b"a"}
    else:
        content = {f"part/{i:03}.bin": random_bytes(256 << 10, i) for i in range(40)}
    wanted = log_version(store, tmp_path, content)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (16 * MiB - sum(len(d) for d in content.values()) // 2))
    dest = small_disk / "download"
    key = "k" if staged else None
    with pytest.raises(DiskFullError) as info:
        Materializer(store, cache).materialize(wanted, dest, stage=key)
    message = str(info.value)
    assert "disk full" in message and str(dest) in message and "free space" in message
    assert isinstance(info.value, OSError)
    from cairn.objects.download_stage import stage_of

    hidden = stage_of(dest, "k")
    if staged:
        assert not dest.exists()
        assert str(hidden) in message
        left = files_in(hidden)
    else:
        left = files_in(dest)
    assert not [p for p in left if "cairn-tmp" in p]  # no temp file left behind
    for path, data in left.items():
        assert data == content[path], f"{path} is partial"  # whole files only
    filler.unlink()  # space freed: the same download completes
    Materializer(store, cache).materialize(wanted, dest, stage=key)
    assert files_in(dest) == content
    assert not hidden.exists()
