"""The stored formats of docs/architecture.md ("Objects"), pinned: blob digests, FastCDC cut
points and the chunk-list object, tree objects, reference digests and the page index. Every
digest here is what existing stores hold; a change to any of them (new chunking parameters, a
different JSON encoding, another hash) makes every stored version unreadable or undeduplicated,
so it must fail here first.

And content-defined chunking measured the way a user notices it: inserting or deleting bytes in
a large file stores little new data. The control test shows the same measure with fixed-size cuts
stores the whole file again, so the measure would notice FastCDC being replaced."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import blake3
import pytest

from cairn.core.digest import hash_bytes
from cairn.objects import chunking, tree
from cairn.objects.hashcache import HashCache
from cairn.objects.ingest import Ingestor, StagedFile
from cairn.objects.keyed import KeyedObjectStore
from cairn.objects.references import make_entry, reference_digest
from cairn.objects.tree import FileEntry
from cairn.storage.local import LocalStorage

MiB = 1 << 20


def random_bytes(n: int, seed: int | str) -> bytes:
    """Deterministic bytes: BLAKE3 of 'seed <seed>' in extendable-output mode."""
    return blake3.blake3(f"seed {seed}".encode()).digest(n)


@pytest.fixture
def object_store(tmp_path: Path) -> KeyedObjectStore:
    return KeyedObjectStore(LocalStorage(tmp_path / "store"))


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[HashCache]:
    c = HashCache(tmp_path / "cache" / "hashes.db")
    yield c
    c.close()


def log_file(
    object_store: KeyedObjectStore, cache: HashCache | None, path: Path
) -> tuple[FileEntry, int]:
    """Log one file as the SDK does: (its entry, the bytes of new objects stored)."""
    ingestor = Ingestor(object_store, cache)
    [entry] = ingestor.hash_files([StagedFile(path.name, path)])
    ingestor.store_tree(tree.build([entry]))
    return entry, ingestor.stats.new_bytes


# --- pinned test vectors ---------------------------------------------------------------------

VECTOR = random_bytes(6 * MiB, "vector")  # chunked: at least CHUNK_THRESHOLD (4 MiB)
VECTOR_DIGEST = "blake3:8019009f29c4caa342ad8eb7c3d42f47f6893b5d74c20df72aaea7e089c44f18"
# FastCDC, min 128 KiB, average 512 KiB, max 2 MiB (pyfastcdc, normalisation as configured)
VECTOR_CUTS = [891981, 759896, 470845, 636660, 484749, 460754, 1090915, 462211, 850384, 183061]
VECTOR_FIRST_CHUNK = "blake3:71dc16dcab4b5d4dc61bc6e3c2002bed56d6759cc250e30212e39ed0930fb4b8"
VECTOR_CHUNK_LIST = "blake3:4e6784be774d88a087546fd61603b5d14eecba78b983c13c5981083e30b17ed0"


def test_a_blob_is_named_by_the_plain_blake3_of_its_bytes() -> None:
    # the BLAKE3 reference test vectors, so `b3sum` agrees with Cairn
    assert hash_bytes(b"") == (
        "blake3:af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
    )
    assert hash_bytes(b"abc") == (
        "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
    )
    assert hash_bytes(VECTOR) == VECTOR_DIGEST


def test_cut_points_and_the_chunk_list_are_pinned(
    object_store: KeyedObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    path = tmp_path / "vector.bin"
    path.write_bytes(VECTOR)
    entry, _ = log_file(object_store, cache, path)
    assert entry.digest == VECTOR_DIGEST and entry.size == len(VECTOR)
    assert entry.chunks == VECTOR_CHUNK_LIST
    stored = object_store.get(VECTOR_CHUNK_LIST)
    doc = json.loads(stored)
    assert [n for _d, n in doc["chunks"]] == VECTOR_CUTS
    assert doc["chunks"][0][0] == VECTOR_FIRST_CHUNK
    # the exact bytes: compact JSON, keys in this order, [digest, length] pairs
    offsets = [sum(VECTOR_CUTS[:i]) for i in range(len(VECTOR_CUTS))]
    pairs = ",".join(
        f'["{hash_bytes(VECTOR[o : o + n])}",{n}]'
        for o, n in zip(offsets, VECTOR_CUTS, strict=True)
    )
    expected = f'{{"cairn":"chunks","v":1,"size":{len(VECTOR)},"chunks":[{pairs}]}}'.encode()
    assert stored == expected
    assert hash_bytes(expected) == VECTOR_CHUNK_LIST


README = "blake3:a7571bdccf585d945e7f92dc16ad8d3da3e92f3903a65a8d8eca426b7b998f7a"
TRAIN = "blake3:c42223f1fbf292f60491e1d0666e49af4b7eb75a63385041b98391acecf68562"
REF = "blake3:5ad2521b50c189b2ea4bca2362fa9e6db0d1b0a7c1bb304267e4d7b8fc905bd0"
DATA_TREE = "blake3:83936a5c00f8eb22a4f28d801b9d79cd4f255525181d8a4d4525d7a68afca5a0"
ROOT = "blake3:ae0a66c6e640efbab3ae9a5a264a9527bf214ca8a508fbb50374668143cac3c9"


def test_a_reference_digest_is_pinned() -> None:
    fields = {"version": "v9", "etag": "abc"}
    canonical = (
        b'{"cairn":"ref","s":12,"u":"s3://bucket/ref.csv","v":1,"x":{"etag":"abc","version":"v9"}}'
    )
    assert hash_bytes(canonical) == REF
    assert reference_digest("s3://bucket/ref.csv", 12, fields) == REF


def test_tree_objects_are_pinned() -> None:
    assert hash_bytes(b"# hi\n") == README and hash_bytes(b"a,b\n1,2\n") == TRAIN
    entries = [
        FileEntry("README.md", README, 5),
        FileEntry("model.bin", VECTOR_DIGEST, len(VECTOR), VECTOR_CHUNK_LIST),
        FileEntry("data/train.csv", TRAIN, 8),
        make_entry("ref.csv", "s3://bucket/ref.csv", 12, {"etag": "abc", "version": "v9"}),
    ]
    built = tree.build(entries)
    data_tree = (
        '{"cairn":"tree","entries":[{"d":"' + TRAIN + '","n":"train.csv","s":8,"t":"f"}],"v":1}'
    ).encode()
    root = (
        '{"cairn":"tree","entries":['
        '{"d":"' + README + '","n":"README.md","s":5,"t":"f"},'
        '{"d":"' + DATA_TREE + '","k":1,"n":"data","s":8,"t":"d"},'
        '{"c":"' + VECTOR_CHUNK_LIST + '","d":"' + VECTOR_DIGEST + '","n":"model.bin",'
        '"s":6291456,"t":"f"},'
        '{"d":"' + REF + '","n":"ref.csv","s":12,"t":"r","u":"s3://bucket/ref.csv",'
        '"x":{"etag":"abc","version":"v9"}}'
        '],"v":1}'
    ).encode()
    assert built.objects == {DATA_TREE: data_tree, ROOT: root}
    assert hash_bytes(data_tree) == DATA_TREE and hash_bytes(root) == ROOT
    assert (built.root, built.size, built.file_count) == (ROOT, 5 + 8 + len(VECTOR) + 12, 4)


def test_the_page_index_of_a_wide_folder_is_pinned() -> None:
    wide = [
        FileEntry(f"f{i:05}.txt", hash_bytes(str(i).encode()), len(str(i))) for i in range(5000)
    ]
    built = tree.build(wide)
    assert built.root == "blake3:a5685616ca9f4fd3ab14b95423e1b0cf8b9d6353cd455f66c6f1775f8d491087"
    index = json.loads(built.objects[built.root])
    assert index["cairn"] == "pages" and index["v"] == 1
    assert len(built.objects) == 1 + len(index["pages"])
    assert sum(p["k"] for p in index["pages"]) == 5000
    assert all(256 <= p["k"] <= 4096 for p in index["pages"][:-1])


# --- content-defined chunking, measured --------------------------------------------------------

BIG = random_bytes(24 * MiB, "cdc")


def _edits(object_store: KeyedObjectStore, cache: HashCache, tmp_path: Path) -> dict[str, int]:
    """New bytes stored by logging BIG, then each edit of it."""
    path = tmp_path / "big.bin"
    path.write_bytes(BIG)
    _, first = log_file(object_store, cache, path)
    new = {"first log": first}
    middle = 12 * MiB + 12345
    for what, data in {
        "1 byte inserted at the front": b"\x00" + BIG,
        "1 byte deleted at the front": BIG[1:],
        "100 bytes inserted in the middle": BIG[:middle] + b"x" * 100 + BIG[middle:],
        "1 MiB deleted in the middle": BIG[:middle] + BIG[middle + MiB :],
    }.items():
        path.write_bytes(data)
        entry, new[what] = log_file(object_store, cache, path)
        assert entry.digest == hash_bytes(data)
    return new


def test_insertions_and_deletions_store_little(
    object_store: KeyedObjectStore, cache: HashCache, tmp_path: Path
) -> None:
    new = _edits(object_store, cache, tmp_path)
    assert new["first log"] >= 24 * MiB
    # fixed-size cuts would store the whole 24 MiB again for the first three (see below);
    # FastCDC re-synchronises after the edit: one or two chunks (and the chunk list) are new
    assert new["1 byte inserted at the front"] < MiB, new
    assert new["1 byte deleted at the front"] < MiB, new
    assert new["100 bytes inserted in the middle"] < 2 * MiB, new
    assert new["1 MiB deleted in the middle"] < 2 * MiB, new


@dataclass
class _Cut:
    offset: int
    length: int


class _FixedCuts:
    """What the chunker would be if FastCDC were replaced by fixed 512 KiB cuts."""

    def cut_buf(self, data: bytes | memoryview) -> Iterator[_Cut]:
        for offset in range(0, len(data), 512 << 10):
            yield _Cut(offset, min(512 << 10, len(data) - offset))


def test_control_fixed_size_cuts_would_store_the_file_again(
    object_store: KeyedObjectStore,
    cache: HashCache,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The measure above notices a broken chunker: with fixed cuts an insertion at the front
    stores the whole file again."""
    monkeypatch.setattr(chunking, "chunker", lambda: _FixedCuts())
    new = _edits(object_store, cache, tmp_path)
    assert new["1 byte inserted at the front"] >= 20 * MiB
    assert new["1 byte deleted at the front"] >= 20 * MiB


def test_a_hash_cache_in_the_first_layout_keeps_its_records_when_opened(tmp_path: Path) -> None:
    """Caches written by earlier releases (a rowid table keyed by (dev, ino) with an index on
    ino) are converted on open, every record kept: a million-file dataset is not read again,
    and the next log is answered from the cache as before."""
    import sqlite3

    path = tmp_path / "cache" / "hashes.db"
    path.parent.mkdir()
    src = tmp_path / "f.bin"
    src.write_bytes(b"data" * 100)
    st = src.stat()
    key = (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    old = sqlite3.connect(path)
    old.execute(
        "CREATE TABLE files (dev INTEGER, ino INTEGER, size INTEGER, mtime_ns INTEGER,"
        " ctime_ns INTEGER, digest TEXT NOT NULL, chunks TEXT, PRIMARY KEY (dev, ino))"
    )
    old.execute("CREATE INDEX files_ino ON files (ino)")
    old.executemany(
        "INSERT INTO files VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(*key, hash_bytes(b"data" * 100), None), (1, 2, 3, 4, 5, "blake3:" + "0" * 64, "x")],
    )
    old.commit()
    old.close()

    cache = HashCache(path)
    try:
        found = cache.get_many([key, (1, 2, 3, 4, 5)])
        assert found[key].digest == hash_bytes(b"data" * 100)
        assert found[(1, 2, 3, 4, 5)].chunks == "x"
        # and a log of the file is answered by it: nothing read
        object_store = KeyedObjectStore(LocalStorage(tmp_path / "store"))
        object_store.put(hash_bytes(b"data" * 100), b"data" * 100)
        ingestor = Ingestor(object_store, cache)
        [entry] = ingestor.hash_files([StagedFile("f.bin", src)])
        assert entry.digest == hash_bytes(b"data" * 100)
        assert ingestor.stats.hashed_files == 0
    finally:
        cache.close()
    db = sqlite3.connect(path)
    (layout,) = db.execute("SELECT sql FROM sqlite_master WHERE name = 'files'").fetchone()
    indexes = db.execute("SELECT name FROM sqlite_master WHERE type = 'index'").fetchall()
    db.close()
    assert "WITHOUT ROWID" in layout
    assert ("files_ino",) not in indexes


def test_the_hash_cache_lists_the_folders_below_a_path_and_no_others(tmp_path: Path) -> None:
    from cairn.objects.hashcache import CachedFolder

    cache = HashCache(tmp_path / "hashes.db")
    try:
        paths = ["/data/a", "/data/a/x", "/data/a/x/y", "/data/ab", "/data/a-b", "/data/b"]
        cache.put_folders("store", [(p, CachedFolder("sig", f"tree {p}", 1, 1, 0)) for p in paths])
        cache.put_folders("other", [("/data/a/z", CachedFolder("sig", "tree other", 1, 1, 0))])
        assert sorted(cache.folder_trees("store", "/data/a", 10)) == [
            "tree /data/a",
            "tree /data/a/x",
            "tree /data/a/x/y",
        ]
        assert sorted(cache.folder_trees("store", "/data/a/", 10)) == sorted(
            cache.folder_trees("store", "/data/a", 10)
        )
        assert len(cache.folder_trees("store", "/data", 2)) == 2  # at most the limit
        assert len(cache.folder_trees("store", "/", 10)) == 6
    finally:
        cache.close()
