"""Downloads: a version's files written into a folder, byte for byte, verified; a second
download leaves correct files alone; a damaged store never leaves a damaged file behind."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from cairn.errors import IntegrityError, InvalidPathError, ObjectNotFoundError
from cairn.objects import tree
from cairn.objects.chunking import CHUNK_THRESHOLD
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import Ingestor, StagedFile
from cairn.objects.materialize import Materializer, Wanted
from cairn.objects.odb import ObjectDB, ObjectStore
from cairn.objects.packdb import PackedObjectDB
from cairn.storage.local import LocalStorage

MiB = 1 << 20


def random_bytes(n: int, seed: int | str = 0) -> bytes:
    return blake3.blake3(f"seed {seed}".encode()).digest(n)


@pytest.fixture(params=["objects", "packs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ObjectStore]:
    """Both local object stores: one file per object, and pack files with an index."""
    if request.param == "objects":
        yield ObjectDB(LocalStorage(tmp_path / "store"))
    else:
        packed = PackedObjectDB(tmp_path / "store")
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
        Wanted(p, e["d"], e["s"], e.get("c")) for p, e in tree.iter_files(built.root, store.get)
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


def test_second_download_repairs_files_changed_since(
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
    later = st.st_mtime_ns + 2_000_000_000
    os.utime(edited, ns=(later, later))
    (dest / "model/other.bin").unlink()
    Materializer(store, cache).materialize(wanted, dest)
    assert files_in(dest) == CONTENT
    after = inodes(dest)
    untouched = set(CONTENT) - {"README.md", "train/part-0.csv", "model/other.bin"}
    assert {p: after[p] for p in untouched} == {p: before[p] for p in untouched}


def test_download_replaces_a_symlink_instead_of_writing_through_it(
    store: ObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    wanted = log_version(store, tmp_path, {"a.txt": b"from the store"})
    dest = tmp_path / "download"
    dest.mkdir()
    outside = tmp_path / "precious.txt"
    outside.write_bytes(b"the user's own file")
    (dest / "a.txt").symlink_to(outside)
    Materializer(store, cache).materialize(wanted, dest)
    assert not (dest / "a.txt").is_symlink()
    assert (dest / "a.txt").read_bytes() == b"from the store"
    assert outside.read_bytes() == b"the user's own file"


@pytest.mark.parametrize("which", ["train/part-0.csv", "model/weights.bin"])
def test_a_corrupt_object_is_detected_and_leaves_no_file(
    store: ObjectStore, cache: HashCache, tmp_path: Path, which: str
) -> None:
    wanted = log_version(store, tmp_path, {which: CONTENT[which], "ok.txt": b"fine"})
    # a small file's one object, or one chunk in the middle of a chunked file
    data = CONTENT[which]
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
    with pytest.raises(IntegrityError):
        Materializer(store, cache).materialize(wanted, good)
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
