"""Logging files into the object store: small files whole, large files as content-defined
chunks, the hash cache, deduplication, and the errors a user's files can cause."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from cairn.core.digest import hash_bytes
from cairn.errors import FileChangedError, SourceFileError
from cairn.objects import chunking, tree
from cairn.objects.chunking import CHUNK_THRESHOLD, MAX_CHUNK, MIN_CHUNK
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import BLOCK, Ingestor, StagedFile
from cairn.objects.keyed import KeyedObjectStore
from cairn.objects.store import object_key
from cairn.objects.tree import BuiltTree, FileEntry
from cairn.storage.local import LocalStorage
from unprivileged import is_root, nobody_dir, run_as_nobody

MiB = 1 << 20


# --- helpers ----------------------------------------------------------------------------------


def random_bytes(n: int, seed: int | str = 0) -> bytes:
    """Deterministic incompressible bytes (BLAKE3 in extendable-output mode: fast)."""
    return blake3.blake3(f"seed {seed}".encode()).digest(n)


def write(path: Path, data: bytes, *, age: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if age:
        make_old(path)
    return path


def make_old(path: Path, seconds: int = 120) -> None:
    """Date a file's mtime back, as for any file not written this very second; the hash
    cache ignores files modified within the last second (they may still be changing)."""
    t = time.time_ns() - seconds * 1_000_000_000
    os.utime(path, ns=(t, t))


def stage(files: dict[str, Path]) -> list[StagedFile]:
    return [StagedFile(p, src) for p, src in files.items()]


def log(
    object_store: KeyedObjectStore, cache: HashCache | None, files: dict[str, Path], **kw: object
) -> tuple[Ingestor, list[FileEntry], BuiltTree]:
    """What logging an artifact does: hash and store the files, then the tree."""
    ingestor = Ingestor(object_store, cache, **kw)  # type: ignore[arg-type]
    entries = ingestor.hash_files(stage(files))
    built = tree.build(entries)
    ingestor.store_tree(built)
    return ingestor, entries, built


def keys(object_store: KeyedObjectStore) -> list[str]:
    return list(object_store.storage.list("objects/"))


def assert_every_object_matches_its_name(object_store: KeyedObjectStore) -> None:
    for digest in object_store.all_digests():
        object_store.get(digest, verify=True)


def read_back(object_store: KeyedObjectStore, e: FileEntry) -> bytes:
    if e.chunks is None:
        return object_store.get(e.digest)
    return b"".join(
        object_store.get(d) for d, _ in chunking.decode_chunk_list(object_store.get(e.chunks))
    )


@pytest.fixture
def object_store(tmp_path: Path) -> KeyedObjectStore:
    return KeyedObjectStore(LocalStorage(tmp_path / "store"))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    c = HashCache(tmp_path / "cache" / "hashes.db")
    yield c
    c.close()


@pytest.fixture
def src(tmp_path: Path) -> Path:
    d = tmp_path / "src"
    d.mkdir()
    return d


# --- small and large files --------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 1, 1000, CHUNK_THRESHOLD - 1])
def test_small_file_is_stored_whole(
    object_store: KeyedObjectStore, cache: HashCache, src: Path, size: int
) -> None:
    data = random_bytes(size)
    _, [e], _ = log(object_store, cache, {"f.bin": write(src / "f.bin", data)})
    assert e.chunks is None
    assert e.size == size
    assert e.digest == hash_bytes(data)
    assert object_store.get(e.digest) == data


@pytest.mark.parametrize(
    "size",
    [CHUNK_THRESHOLD, BLOCK, 2 * BLOCK + 12345],
    ids=["threshold", "one-block", "two-blocks-and-a-bit"],
)
def test_large_file_is_stored_as_chunks_and_a_chunk_list(
    object_store: KeyedObjectStore, cache: HashCache, src: Path, size: int
) -> None:
    data = random_bytes(size, size)
    _, [e], _ = log(object_store, cache, {"model.bin": write(src / "model.bin", data)})
    assert e.size == size
    assert e.digest == hash_bytes(data)  # the file's digest is BLAKE3 of its bytes
    assert e.chunks is not None
    doc = json.loads(object_store.get(e.chunks))
    assert (doc["cairn"], doc["size"]) == ("chunks", size)
    chunks = chunking.decode_chunk_list(object_store.get(e.chunks))
    assert b"".join(object_store.get(d) for d, _ in chunks) == data
    lengths = [n for _, n in chunks]
    assert sum(lengths) == size
    assert all(n <= MAX_CHUNK for n in lengths)
    assert all(n >= MIN_CHUNK for n in lengths[:-1])
    for d, n in chunks:
        assert object_store.storage.size(object_key(d)) == n
    # reading in blocks does not move the cut points: they are those of the whole file at once,
    # so the same bytes deduplicate however they are laid out in blocks
    assert lengths == [c.length for c in chunking.chunker().cut_buf(data)]
    assert not object_store.has(e.digest)  # no second, whole copy


def test_editing_one_mib_of_a_large_file_stores_little(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    data = bytearray(random_bytes(64 * MiB, "big"))
    path = write(src / "weights.bin", bytes(data))
    first, [e1], _ = log(object_store, cache, {"weights.bin": path})
    assert first.stats.new_bytes >= 64 * MiB

    data[32 * MiB : 33 * MiB] = random_bytes(MiB, "patch")
    write(path, bytes(data))
    second, [e2], _ = log(object_store, cache, {"weights.bin": path})
    assert second.stats.hashed_files == 1
    assert 0 < second.stats.new_bytes < 4 * MiB
    assert e2.digest == hash_bytes(bytes(data)) != e1.digest
    assert read_back(object_store, e2) == data
    assert read_back(object_store, e1) != data  # the old version is intact too


def test_identical_content_is_stored_once(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    small = random_bytes(5000, "small")
    large = random_bytes(CHUNK_THRESHOLD + MiB, "large")
    files = {
        "a/small.txt": write(src / "a.txt", small),
        "b/small.txt": write(src / "b.txt", small),
        "a/large.bin": write(src / "a.bin", large),
        "b/large.bin": write(src / "b.bin", large),
        "c/large.bin": write(src / "c.bin", large),
    }
    ingestor = Ingestor(object_store, cache)
    entries = ingestor.hash_files(stage(files))
    by_path = {e.path: e for e in entries}
    assert by_path["a/small.txt"].digest == by_path["b/small.txt"].digest
    assert by_path["a/large.bin"].chunks == by_path["c/large.bin"].chunks
    chunk_list = object_store.get(by_path["a/large.bin"].chunks or "")
    n_chunks = len(chunking.decode_chunk_list(chunk_list))
    # one copy of each content, whatever the order the threads got to it
    assert ingestor.stats.new_bytes == len(small) + len(large) + len(chunk_list)
    assert ingestor.stats.new_objects == 1 + n_chunks + 1
    assert len(keys(object_store)) == 1 + n_chunks + 1


# --- the hash cache ---------------------------------------------------------------------------


def test_unchanged_files_are_not_read_again(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    files = {
        "x.csv": write(src / "x.csv", random_bytes(3000, 1)),
        "d/y.csv": write(src / "y.csv", random_bytes(10, 2)),
        "big.bin": write(src / "big.bin", random_bytes(CHUNK_THRESHOLD + 5, 3)),
    }
    first, entries1, built1 = log(object_store, cache, files)
    assert first.stats.hashed_files == 3
    before = {k: object_store.storage.size(k) for k in keys(object_store)}

    second, entries2, built2 = log(object_store, cache, files)
    assert second.stats.hashed_files == 0
    assert second.stats.hashed_bytes == 0
    assert (second.stats.new_objects, second.stats.new_bytes) == (0, 0)
    assert entries2 == entries1
    assert built2.root == built1.root
    assert {k: object_store.storage.size(k) for k in keys(object_store)} == before


def test_a_file_changed_since_it_was_cached_is_read_again(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    path = write(src / "x.csv", b"a,b\n1,2\n")
    _, [e1], _ = log(object_store, cache, {"x.csv": path})
    # same size, new content, and an mtime that is also long past (a copy from elsewhere)
    path.write_bytes(b"a,b\n3,4\n")
    make_old(path, seconds=300)
    second, [e2], _ = log(object_store, cache, {"x.csv": path})
    assert second.stats.hashed_files == 1
    assert e2.digest == hash_bytes(b"a,b\n3,4\n") != e1.digest
    assert object_store.get(e2.digest) == b"a,b\n3,4\n"


def test_a_file_modified_this_second_is_not_trusted_from_the_cache(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    # it could change again within the same timestamp tick, unseen by its mtime
    path = write(src / "x.csv", b"fresh", age=False)
    log(object_store, cache, {"x.csv": path})
    second, _, _ = log(object_store, cache, {"x.csv": path})
    assert second.stats.hashed_files == 1


# --- a user's files going wrong ---------------------------------------------------------------


def test_missing_file(object_store: KeyedObjectStore, cache: HashCache, src: Path) -> None:
    ok = write(src / "ok.txt", b"fine")
    gone = src / "gone.txt"
    with pytest.raises(SourceFileError, match=r"gone\.txt") as info:
        Ingestor(object_store, cache).hash_files(stage({"ok.txt": ok, "gone.txt": gone}))
    assert str(gone) in str(info.value)
    assert info.value.path == str(gone)


_UNREADABLE = """
import sys
from pathlib import Path
from cairn.errors import SourceFileError
from cairn.objects.ingest import Ingestor, StagedFile
from cairn.objects.keyed import KeyedObjectStore
from cairn.storage.local import LocalStorage

store, path = Path(sys.argv[1]), Path(sys.argv[2])
try:
    object_store = KeyedObjectStore(LocalStorage(store))
    Ingestor(object_store, None).hash_files([StagedFile("secret.txt", path)])
except SourceFileError as exc:
    assert exc.path == str(path), exc.path
    print("refused:", exc)
else:
    print("read it")
"""


def test_unreadable_file(object_store: KeyedObjectStore, cache: HashCache, src: Path) -> None:
    if not is_root():
        path = write(src / "secret.txt", b"no peeking")
        path.chmod(0)
        with pytest.raises(SourceFileError, match="not readable") as info:
            Ingestor(object_store, cache).hash_files(stage({"secret.txt": path}))
        assert str(path) in str(info.value)
        return
    # root reads any file: the same scenario as the unprivileged user nobody
    with nobody_dir() as home:
        path = write(home / "secret.txt", b"no peeking")  # owned by root, mode 000
        path.chmod(0)
        done = run_as_nobody(_UNREADABLE, str(home / "store"), str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused:") and "not readable" in done.stdout, done.stdout
    assert str(path) in done.stdout


def test_a_folder_is_not_a_file(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    folder = src / "folder"
    folder.mkdir()
    with pytest.raises(SourceFileError) as info:
        Ingestor(object_store, cache).hash_files(stage({"folder": folder}))
    assert str(folder) in str(info.value)


def test_a_fifo_is_refused_not_waited_on(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    fifo = src / "pipe"
    os.mkfifo(fifo)
    outcome: list[BaseException | None] = []

    def run() -> None:
        try:
            Ingestor(object_store, cache).hash_files(stage({"pipe": fifo}))
            outcome.append(None)
        except BaseException as exc:
            outcome.append(exc)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(10)
    if t.is_alive():
        # unblock the reader stuck in open() so the thread can end, then fail
        os.close(os.open(fifo, os.O_WRONLY))
        t.join(10)
        pytest.fail("logging a FIFO waited for a writer instead of refusing it")
    assert len(outcome) == 1 and isinstance(outcome[0], SourceFileError)
    assert str(fifo) in str(outcome[0])


def test_large_file_changing_while_read(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    path = write(src / "growing.log", random_bytes(BLOCK + 4 * MiB, "log"))

    def progress(files: int, nbytes: int) -> None:
        # the first block has been read: another program appends to the file
        if nbytes and path.stat().st_size == BLOCK + 4 * MiB:
            with open(path, "ab") as f:
                f.write(b"one more line\n")

    with pytest.raises(FileChangedError) as info:
        Ingestor(object_store, cache, progress=progress).hash_files(stage({"growing.log": path}))
    assert str(path) in str(info.value)
    assert_every_object_matches_its_name(object_store)
    # once the file is quiet, it logs
    make_old(path)
    _, [e], _ = log(object_store, cache, {"growing.log": path})
    assert read_back(object_store, e) == path.read_bytes()


def test_large_file_rewritten_in_place_while_read(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    size = BLOCK + 4 * MiB
    path = write(src / "data.bin", random_bytes(size, "in place"))

    def progress(files: int, nbytes: int) -> None:
        if nbytes:  # rewrite bytes on both sides of the first block's end, size unchanged
            with open(path, "r+b") as f:
                f.seek(BLOCK - MiB)
                f.write(random_bytes(2 * MiB, "overwrite"))

    with pytest.raises(FileChangedError):
        Ingestor(object_store, cache, progress=progress).hash_files(stage({"data.bin": path}))
    assert_every_object_matches_its_name(object_store)


@pytest.mark.parametrize("how", ["append", "rewrite"])
def test_small_file_changing_while_read(
    object_store: KeyedObjectStore,
    cache: HashCache,
    src: Path,
    monkeypatch: pytest.MonkeyPatch,
    how: str,
) -> None:
    path = write(src / "note.txt", b"x" * 100_000)
    ino = path.stat().st_ino
    real_read = os.read
    done = []

    def read(fd: int, n: int) -> bytes:
        data = real_read(fd, n)
        if not done and os.fstat(fd).st_ino == ino:
            done.append(True)
            # another program writes to the file between two reads of Cairn
            with open(path, "ab" if how == "append" else "r+b") as f:
                f.write(b"y" * 10)
        return data

    monkeypatch.setattr(os, "read", read)
    with pytest.raises(FileChangedError) as info:
        Ingestor(object_store, cache).hash_files(stage({"note.txt": path}))
    assert done
    assert str(path) in str(info.value)
    assert_every_object_matches_its_name(object_store)


def test_a_rewrite_within_one_timestamp_tick_never_corrupts_the_store(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    # File timestamps are coarse (a clock tick of a few ms): a write that lands in the same
    # tick as the previous one leaves the mtime unchanged. Cairn cannot see such a change, but
    # whatever it logs must still be consistent: every object holds the bytes its name says.
    size = BLOCK + 4 * MiB
    path = write(src / "data.bin", random_bytes(size, "tick"))
    before = path.stat()

    def progress(files: int, nbytes: int) -> None:
        if nbytes:  # rewrite the end of the first block, which was read but not yet stored
            with open(path, "r+b") as f:
                f.seek(BLOCK - 64 * 1024)
                f.write(bytes(64 * 1024))
            os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    ingestor = Ingestor(object_store, None, progress=progress)
    [e] = ingestor.hash_files(stage({"data.bin": path}))
    assert_every_object_matches_its_name(object_store)
    assert hash_bytes(read_back(object_store, e)) == e.digest


def test_a_small_file_rewritten_within_one_tick_never_corrupts_the_store(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    first = write(src / "first.txt", b"first file")
    second = write(src / "second.txt", b"second file, original")
    before = second.stat()
    calls = []

    def progress(files: int, nbytes: int) -> None:
        # both files of the group have been read; the second is rewritten in the same tick
        if not calls:
            calls.append(1)
            second.write_bytes(b"second file, REWRITTEN")
            os.utime(second, ns=(before.st_atime_ns, before.st_mtime_ns))

    ingestor = Ingestor(object_store, None, progress=progress)
    entries = ingestor.hash_files(stage({"first.txt": first, "second.txt": second}))
    assert calls
    assert_every_object_matches_its_name(object_store)
    for e in entries:
        assert hash_bytes(read_back(object_store, e)) == e.digest


# --- storing the tree -------------------------------------------------------------------------


class WatchedStorage(LocalStorage):
    """A local store that checks, as each tree object or chunk list is written, that every
    object it refers to is already stored (a reader may find it at any moment)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.problems: list[str] = []
        self.tree_writes = 0

    def put(self, key: str, data: bytes | memoryview) -> bool:
        refs: list[str] = []
        try:
            doc = json.loads(bytes(data))
        except (ValueError, UnicodeDecodeError):
            doc = None
        if isinstance(doc, dict) and doc.get("cairn") == "tree":
            refs = [e.get("c") or e["d"] for e in doc["entries"]]
        elif isinstance(doc, dict) and doc.get("cairn") == "pages":
            refs = [p["d"] for p in doc["pages"]]
        elif isinstance(doc, dict) and doc.get("cairn") == "chunks":
            refs = [d for d, _ in doc["chunks"]]
        if isinstance(doc, dict) and doc.get("cairn") in ("tree", "pages"):
            self.tree_writes += 1
        for ref in refs:
            if not self.exists(object_key(ref)):
                self.problems.append(f"{key} written before {ref}")
        return super().put(key, data)


def make_files(src: Path) -> dict[str, Path]:
    files = {
        "README.md": write(src / "README.md", b"# data\n"),
        "train/a.csv": write(src / "train-a.csv", random_bytes(2000, "a")),
        "train/deep/b.csv": write(src / "train-b.csv", random_bytes(3000, "b")),
        "model/weights.bin": write(src / "weights.bin", random_bytes(CHUNK_THRESHOLD + 7, "w")),
    }
    for i in range(40):  # a wide folder whose pages hold files and subfolders
        name = f"wide/f{i:03d}" if i % 4 else f"wide/d{i:03d}/x"
        files[name] = write(src / f"wide-{i}", random_bytes(100, i))
    return files


def test_store_tree_writes_children_first_and_every_object(
    tmp_path: Path, cache: HashCache, src: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # small pages, so that the wide folder needs pages and an index of pages
    monkeypatch.setattr(tree, "MAX_ENTRIES", 4)
    monkeypatch.setattr(tree, "MIN_PAGE", 2)
    storage = WatchedStorage(tmp_path / "store")
    object_store = KeyedObjectStore(storage)
    files = make_files(src)
    _, _, built = log(object_store, cache, files)
    assert storage.problems == []
    assert storage.tree_writes == len(built.objects)
    assert object_store.missing(built.objects) == set()
    # the version reads back from the store alone
    listed = dict(tree.iter_files(built.root, object_store.get))
    assert sorted(listed) == sorted(files)
    for path, source in files.items():
        entry = FileEntry.of(path, listed[path])
        assert read_back(object_store, entry) == source.read_bytes()


def test_store_tree_restores_cached_files_whose_objects_are_gone(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    files = make_files(src)
    log(object_store, cache, files)
    # the version was collected: every object is gone, but the hash cache still knows the files
    for key in keys(object_store):
        object_store.storage.delete(key)
    again, entries, built = log(object_store, cache, files)
    assert again.stats.hashed_files == 0  # digests from the cache ...
    assert again.stats.new_objects > len(built.objects)  # ... and every object written again
    assert object_store.missing(built.objects) == set()
    for e in entries:
        assert read_back(object_store, e) == files[e.path].read_bytes()
    assert_every_object_matches_its_name(object_store)


def test_store_tree_restores_one_lost_file_next_to_a_new_one(
    object_store: KeyedObjectStore, cache: HashCache, src: Path
) -> None:
    files = {
        "d/old.txt": write(src / "old.txt", b"old content"),
        "d/big.bin": write(src / "big.bin", random_bytes(CHUNK_THRESHOLD, "big")),
    }
    _, entries, _ = log(object_store, cache, files)
    by_path = {e.path: e for e in entries}
    object_store.delete(by_path["d/old.txt"].digest)
    object_store.delete(by_path["d/big.bin"].chunks or "")
    files["d/new.txt"] = write(src / "new.txt", b"new content")
    again, entries, _ = log(object_store, cache, files)
    assert again.stats.hashed_files == 1  # the new file; the others came from the cache
    for e in entries:
        assert read_back(object_store, e) == files[e.path].read_bytes()
