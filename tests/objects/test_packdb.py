"""The local packed object database: what a failed write to disk leaves behind."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import cairn.objects.packs.local as packdb
from cairn.core.digest import hash_bytes
from cairn.errors import StoreError
from cairn.objects.packs.local import LocalPackStore


def test_a_pack_the_disk_failed_to_write_is_never_indexed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    object_store = LocalPackStore(tmp_path / "store")
    data = os.urandom(1000)
    digest = hash_bytes(data)
    real = packdb._datasync_close

    def failing(fd: int) -> None:
        os.close(fd)
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(packdb, "_datasync_close", failing)
    assert object_store.put(digest, data)
    with pytest.raises(StoreError, match="nothing of it was indexed"):
        object_store.sync()
    monkeypatch.setattr(packdb, "_datasync_close", real)
    object_store.sync()  # a retry must not index what the failed flush left
    assert object_store.missing([digest]) == {digest}
    assert not list((tmp_path / "store" / "packs").rglob("*.pack"))

    assert object_store.put(digest, data)  # the next log stores it again, and this time it holds
    object_store.sync()
    object_store.close()
    again = LocalPackStore(tmp_path / "store")
    assert again.get(digest) == data
    again.close()


def test_files_the_hash_cache_knows_from_another_store_are_stored_here(tmp_path: Path) -> None:
    """The hash cache is per CAIRN_DIR, shared by every store used from it (a server's cache,
    a bucket, the local store) and filled by downloads too: a cache hit says what a file's
    digest is, not that this store holds it."""
    from cairn.objects import tree
    from cairn.objects.hashcache import HashCache
    from cairn.objects.ingest import Ingestor, StagedFile

    cache = HashCache(tmp_path / "cache" / "hashes.db")
    src = tmp_path / "f.txt"
    src.write_bytes(b"x" * 1000)
    old = os.stat(src).st_mtime - 10
    os.utime(src, (old, old))
    elsewhere = LocalPackStore(tmp_path / "elsewhere")
    first = Ingestor(elsewhere, cache)
    first.hash_files([StagedFile("f.txt", src)])
    first.flush_cache()
    elsewhere.close()

    local = LocalPackStore(tmp_path / "store")
    assert local.generation() == 0  # never collected
    ingestor = Ingestor(local, cache)
    entries = ingestor.hash_files([StagedFile("f.txt", src)])
    assert ingestor.stats.hashed_files == 0  # answered by the cache
    built = tree.build(entries)
    ingestor.store_tree(built)
    local.sync()
    assert ingestor.lost_since_stored(built) == set()
    assert local.get(entries[0].digest) == b"x" * 1000
    local.close()


def test_a_drop_while_files_are_hashed_is_seen_before_the_commit(tmp_path: Path) -> None:
    """A log that found an old object stored while hashing, then lost it to a gc running
    meanwhile, must not commit: the drop count it compares is the one from before it asked."""
    from cairn.objects import tree
    from cairn.objects.ingest import Ingestor, StagedFile

    object_store = LocalPackStore(tmp_path / "store")
    data = b"old content nobody references"
    old = hash_bytes(data)
    object_store.put(old, data)
    object_store.put(hash_bytes(b"other"), b"other")
    object_store.sync()
    object_store.delete(hash_bytes(b"other"))  # an earlier drop: the count is not 0
    src = tmp_path / "f.txt"
    src.write_bytes(data)
    ingestor = Ingestor(object_store, None)
    entries = ingestor.hash_files([StagedFile("f.txt", src)])  # finds `old` stored
    gc = LocalPackStore(tmp_path / "store")  # another process collects it now
    gc.drop_packs([object_store.locate(old)[0]])
    gc.close()
    built = tree.build(entries)
    ingestor.store_tree(built)
    object_store.sync()
    assert old in ingestor.lost_since_stored(built)
    object_store.close()


def test_put_many_fills_and_seals_packs_as_puts_would(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thousands-object put_many spans several packs and more buffers than one system call
    takes: every object is found in the right place afterwards, from another instance."""
    monkeypatch.setattr(packdb, "PACK_TARGET", 256 << 10)
    objs = [(b"%d:" % i) + os.urandom(i % 700) for i in range(3000)]
    items = [(hash_bytes(o), o) for o in objs]
    store = LocalPackStore(tmp_path / "store")
    assert all(store.put_many(items[:1500]))
    assert all(store.put_many(items[1500:]))
    store.sync()
    packs = list((tmp_path / "store" / "packs").rglob("*.pack"))
    assert len(packs) >= sum(map(len, objs)) // (256 << 10)
    other = LocalPackStore(tmp_path / "store")
    assert other.missing(d for d, _ in items) == set()
    assert all(other.get(d) == o for d, o in items)
