"""One contract, every object store: the behaviour `cairn.objects.store.ObjectStore` promises.

Implementations (each test runs on all):

- ``local``: `LocalPackStore`, pack files and ``index.db`` in a folder (the embedded store);
- ``keyed``: `KeyedObjectStore`, one storage key per object (tests, benchmarks);
- ``bucket-s3``, ``bucket-gcs``, ``bucket-azure``: `BucketPackStore` on the emulators of
  tests/storage/emulators.py, each test in a bucket of its own;
- ``http``: `HttpObjectStore` against a real server (`cairn.server.testing.ServerThread`) on a
  folder store; ``http-bucket``: the same against a server on an S3 bucket, objects moving
  directly between client and bucket on signed URLs.

The contract:

- ``put`` of an object the store has leaves its bytes as they are; put twice before a sync,
  the second put returns False. ``missing`` answers for many digests at once.
- After ``sync``, what was put is durable and visible to another instance of the store (another
  process, another machine).
- ``get`` returns verified bytes: damaged bytes raise IntegrityError, never come back as the
  object. An unknown digest raises ObjectNotFoundError (``get``, ``read_into``).
- ``put_range``/``read_into`` move an object between a file range and the store.
- ``all_digests`` lists every object and ``delete`` forgets one, where the store is local to
  the caller; through a server both raise StoreError (gc runs where the store is).
- Pack stores (local, bucket) also keep the `PackStore` contract gc relies on: ``packs`` lists
  every pack with its size, ``snapshot`` every row, ``drop_packs`` makes the packs' objects
  missing for every instance while ``read_at`` still reads their bytes, ``restore_packs`` brings
  them back, ``delete_pack`` removes a pack.
"""

from __future__ import annotations

import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

import emulators

from cairn.client.http import Http
from cairn.client.objects import HttpObjectStore
from cairn.core.digest import hash_bytes
from cairn.errors import IntegrityError, ObjectNotFoundError, StoreError
from cairn.objects.keyed import KeyedObjectStore
from cairn.objects.packs import PackStore
from cairn.objects.packs.bucket import BucketPackStore
from cairn.objects.packs.format import pack_key
from cairn.objects.packs.local import LocalPackStore
from cairn.objects.store import ObjectStore, object_key, open_object_store
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.storage import open_storage
from cairn.storage.local import LocalStorage

__all__ = ["azure_service", "gcs_service", "s3_service"]
azure_service = emulators.azure_service
gcs_service = emulators.gcs_service
s3_service = emulators.s3_service


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1 :]


def _flip_file(path: Path, offset: int) -> None:
    fd = os.open(path, os.O_RDWR)  # packs are read-only files: the test runs as their owner
    try:
        byte = os.pread(fd, 1, offset)
        os.pwrite(fd, bytes([byte[0] ^ 0xFF]), offset)
    finally:
        os.close(fd)


class Impl:
    """One implementation under test: opens instances of one store, damages stored bytes."""

    def __init__(self, name: str, tmp_path: Path) -> None:
        self.name = name
        self.tmp_path = tmp_path
        self.opened: list[ObjectStore] = []
        self.through_server = name.startswith("http")
        self.packed = name == "local" or name.startswith("bucket")
        self._open: Callable[[int], ObjectStore] = lambda n: pytest.fail("not set")
        self.corrupt: Callable[[str], None] = lambda digest: pytest.fail("not set")
        self.server: ServerThread | None = None
        self.clients: list[Http] = []

    def open(self) -> ObjectStore:
        """Another instance on the same store (as another process would open it)."""
        store = self._open(len(self.opened))
        self.opened.append(store)
        return store

    def close(self) -> None:
        for store in self.opened:
            try:
                store.close()
            except Exception:
                pass  # a test may have closed it, or left it failing on purpose
        for http in self.clients:
            http.close()
        if self.server is not None:
            self.server.stop()


def _local(impl: Impl, request: pytest.FixtureRequest) -> None:
    root = impl.tmp_path / "store"
    impl._open = lambda n: open_object_store(root)

    def corrupt(digest: str) -> None:
        reader = LocalPackStore(root)
        pack, offset, length = reader.locate(digest)
        reader.close()
        _flip_file(reader.pack_path(pack), offset + length // 2)

    impl.corrupt = corrupt


def _keyed(impl: Impl, request: pytest.FixtureRequest) -> None:
    root = impl.tmp_path / "keyed"
    impl._open = lambda n: KeyedObjectStore(LocalStorage(root))
    impl.corrupt = lambda digest: _flip_file(root / object_key(digest), 0)


def _bucket(kind: str) -> Callable[[Impl, pytest.FixtureRequest], None]:
    def setup(impl: Impl, request: pytest.FixtureRequest) -> None:
        if kind == "s3":
            s3: emulators.S3Emulator = request.getfixturevalue("s3_service")
            url = f"s3://{s3.bucket()}/objects"
        elif kind == "gcs":
            gcs: emulators.GCSEmulator = request.getfixturevalue("gcs_service")
            url = f"gs://{gcs.bucket()}/objects"
        else:
            azure: emulators.AzureEmulator = request.getfixturevalue("azure_service")
            url = f"az://{azure.container()}/objects"
        # each instance its own index cache, as on another machine
        impl._open = lambda n: open_object_store(url, cache_dir=impl.tmp_path / f"cache-{n}")

        impl.corrupt = lambda digest: _corrupt_in_bucket(url, digest)

    return setup


def _corrupt_in_bucket(url: str, digest: str) -> None:
    reader = BucketPackStore(open_storage(url), None)
    pack, offset, length = reader.locate([digest])[digest]
    reader.close()
    storage = open_storage(url)
    data = storage.get(pack_key(pack))
    storage.delete(pack_key(pack))
    storage.put(pack_key(pack), _flip(data, offset + length // 2))


def _http(bucket: bool) -> Callable[[Impl, pytest.FixtureRequest], None]:
    def setup(impl: Impl, request: pytest.FixtureRequest) -> None:
        store_url = None
        if bucket:
            s3: emulators.S3Emulator = request.getfixturevalue("s3_service")
            store_url = f"s3://{s3.bucket()}/server"
        settings = ServerSettings(
            database_url=f"sqlite:///{impl.tmp_path / 'server.db'}",
            store=impl.tmp_path / "server-store",
            store_url=store_url,
            cache_dir=impl.tmp_path / "server-cache",
        )
        impl.server = ServerThread(settings).start()
        url = impl.server.url

        # each instance a machine of its own: its own download cache
        def open_client(n: int) -> ObjectStore:
            http = Http(url, None)
            impl.clients.append(http)
            return HttpObjectStore(http, impl.tmp_path / f"client-{n}")

        impl._open = open_client
        if not bucket:
            root = settings.store

            def corrupt(digest: str) -> None:
                reader = LocalPackStore(root)
                pack, offset, length = reader.locate(digest)
                reader.close()
                _flip_file(reader.pack_path(pack), offset + length // 2)

            impl.corrupt = corrupt
        else:
            assert store_url is not None
            bucket_url = store_url
            impl.corrupt = lambda digest: _corrupt_in_bucket(bucket_url, digest)

    return setup


IMPLEMENTATIONS: dict[str, Callable[[Impl, pytest.FixtureRequest], None]] = {
    "local": _local,
    "keyed": _keyed,
    "bucket-s3": _bucket("s3"),
    "bucket-gcs": _bucket("gcs"),
    "bucket-azure": _bucket("azure"),
    "http": _http(bucket=False),
    "http-bucket": _http(bucket=True),
}


@pytest.fixture(params=sorted(IMPLEMENTATIONS))
def impl(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Impl]:
    made = Impl(request.param, tmp_path)
    try:
        IMPLEMENTATIONS[request.param](made, request)
        yield made
    finally:
        made.close()


@pytest.fixture(params=["local", "bucket-s3"])
def packs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Impl]:
    made = Impl(request.param, tmp_path)
    try:
        IMPLEMENTATIONS[request.param](made, request)
        yield made
    finally:
        made.close()


def _obj(seed: int, size: int = 1000) -> tuple[str, bytes]:
    data = (b"%d:" % seed) + os.urandom(size)
    return hash_bytes(data), data


# --- put, missing, get ------------------------------------------------------------------------


def test_put_sync_then_get(impl: Impl) -> None:
    store = impl.open()
    digest, data = _obj(1)
    assert store.missing([digest]) == {digest}
    assert not store.has(digest)
    assert store.put(digest, data) is True
    store.sync()
    assert store.missing([digest]) == set()
    assert store.has(digest)
    assert store.get(digest) == data


def test_add_hashes_and_stores(impl: Impl) -> None:
    store = impl.open()
    digest = store.add(b"added bytes")
    assert digest == hash_bytes(b"added bytes")
    store.sync()
    assert store.get(digest) == b"added bytes"


def test_put_twice_before_sync_stores_once(impl: Impl) -> None:
    store = impl.open()
    digest, data = _obj(2)
    assert store.put(digest, data) is True
    assert store.put(digest, data) is False
    store.sync()
    assert store.get(digest) == data


def test_put_many_answers_as_each_put_would(impl: Impl) -> None:
    store = impl.open()
    before, a, b = _obj(20), _obj(21), _obj(22, 0)
    store.put(*before)
    buf = bytearray(b"0123456789" * 100)
    view = (hash_bytes(bytes(buf[100:600])), memoryview(buf)[100:600])
    written = store.put_many([a, before, b, a, view])
    assert written == [True, False, True, False, True]
    buf[:] = b"x" * len(buf)  # the caller's buffer, reused once put_many returns
    store.sync()
    assert store.missing([a[0], b[0], view[0], before[0]]) == set()
    other = impl.open()
    assert other.get(a[0]) == a[1] and other.get(b[0]) == b[1] and other.get(before[0]) == before[1]
    assert other.get(view[0]) == b"0123456789" * 50
    assert store.put_many([]) == []


def test_put_of_a_stored_object_keeps_its_bytes(impl: Impl) -> None:
    store = impl.open()
    digest, data = _obj(3)
    store.put(digest, data)
    store.sync()
    store.put(digest, data)  # callers ask `missing` first, but a second put is harmless
    store.sync()
    assert store.get(digest) == data
    other = impl.open()
    assert other.get(digest) == data


def test_put_accepts_a_memoryview_and_keeps_its_own_copy(impl: Impl) -> None:
    store = impl.open()
    buf = bytearray(b"0123456789" * 100)
    digest = hash_bytes(bytes(buf[100:600]))
    store.put(digest, memoryview(buf)[100:600])
    buf[:] = b"x" * len(buf)  # the caller reuses its buffer after put returns
    store.sync()
    assert store.get(digest) == b"0123456789" * 50


def test_missing_answers_for_many(impl: Impl) -> None:
    store = impl.open()
    objs = [_obj(i, 100) for i in range(50)]
    for digest, data in objs[::2]:
        store.put(digest, data)
    store.sync()
    wanted = [d for d, _ in objs]
    assert store.missing(wanted) == set(wanted[1::2])
    assert store.missing(iter(wanted[:1])) == set()
    assert store.missing([]) == set()


def test_empty_and_large_objects(impl: Impl) -> None:
    store = impl.open()
    empty = hash_bytes(b"")
    big = os.urandom(6 << 20)
    big_digest = hash_bytes(big)
    store.put(empty, b"")
    store.put(big_digest, big)
    store.sync()
    again = impl.open()
    assert again.get(empty) == b""
    assert again.get(big_digest) == big


def test_unknown_digest_is_not_found(impl: Impl, tmp_path: Path) -> None:
    store = impl.open()
    digest, _ = _obj(4)
    with pytest.raises(ObjectNotFoundError):
        store.get(digest)
    fd = os.open(tmp_path / "out.bin", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        with pytest.raises(ObjectNotFoundError):
            store.read_into(digest, fd, 0)
    finally:
        os.close(fd)


def test_damaged_bytes_are_never_returned(impl: Impl) -> None:
    store = impl.open()
    digest, data = _obj(5, 5000)
    store.put(digest, data)
    store.sync()
    impl.corrupt(digest)
    reader = impl.open()  # nothing cached from before the damage
    with pytest.raises(IntegrityError) as caught:
        reader.get(digest)
    assert caught.value.digest == digest


# --- files ------------------------------------------------------------------------------------


def test_put_range_and_read_into(impl: Impl, tmp_path: Path) -> None:
    store = impl.open()
    src = tmp_path / "src.bin"
    content = os.urandom(300_000)
    src.write_bytes(content)
    part = content[1000:201_000]
    digest = hash_bytes(part)
    fd = os.open(src, os.O_RDONLY)
    try:
        assert store.put_range(digest, fd, 1000, 200_000) is True
    finally:
        os.close(fd)
    store.sync()
    reader = impl.open()
    out = tmp_path / "out.bin"
    fd = os.open(out, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        os.pwrite(fd, b"head", 0)
        assert reader.read_into(digest, fd, 4) == 200_000
    finally:
        os.close(fd)
    assert out.read_bytes() == b"head" + part


def test_warm_then_read_many(impl: Impl) -> None:
    store = impl.open()
    objs = [_obj(i, 3000) for i in range(40)]
    for digest, data in objs:
        store.put(digest, data)
    store.sync()
    reader = impl.open()
    reader.warm([d for d, _ in objs])
    for digest, data in objs:
        assert reader.get(digest) == data


# --- durability and visibility ----------------------------------------------------------------


def test_synced_objects_are_seen_by_another_instance(impl: Impl) -> None:
    writer = impl.open()
    objs = [_obj(i, 2000) for i in range(20)]
    for digest, data in objs:
        writer.put(digest, data)
    writer.sync()
    writer.close()
    reader = impl.open()
    assert reader.missing([d for d, _ in objs]) == set()
    for digest, data in objs:
        assert reader.get(digest) == data


def test_concurrent_puts_of_the_same_objects(impl: Impl) -> None:
    store = impl.open()
    objs = [_obj(i, 5000) for i in range(30)]
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            barrier.wait()
            for digest, data in objs:
                store.put(digest, data)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    store.sync()
    reader = impl.open()
    for digest, data in objs:
        assert reader.get(digest) == data


# --- listing and deleting (where the store is) ------------------------------------------------


def test_all_digests_lists_every_object(impl: Impl) -> None:
    store = impl.open()
    objs = [_obj(i, 100) for i in range(10)]
    for digest, data in objs:
        store.put(digest, data)
    store.sync()
    if impl.through_server:
        with pytest.raises(StoreError, match="cannot be listed"):
            list(store.all_digests())
        return
    assert sorted(impl.open().all_digests()) == sorted(d for d, _ in objs)


def test_delete_forgets_an_object(impl: Impl) -> None:
    store = impl.open()
    (gone, gone_data), (kept, kept_data) = _obj(6), _obj(7)
    store.put(gone, gone_data)
    store.put(kept, kept_data)
    store.sync()
    if impl.through_server:
        with pytest.raises(StoreError, match="cannot be deleted"):
            store.delete(gone)
        return
    store.delete(gone)
    assert store.missing([gone, kept]) == {gone}
    with pytest.raises(ObjectNotFoundError):
        store.get(gone)
    assert store.get(kept) == kept_data
    store.delete(gone)  # deleting what is gone is a no-op
    # stored again, it is found again
    store.put(gone, gone_data)
    store.sync()
    assert store.get(gone) == gone_data


# --- the PackStore operations gc uses ---------------------------------------------------------


def _pack_store(impl: Impl) -> PackStore:
    store = impl.open()
    assert isinstance(store, LocalPackStore | BucketPackStore)
    return store


def test_packs_and_snapshot_list_what_was_written(packs: Impl) -> None:
    store = _pack_store(packs)
    objs = [_obj(i, 4000) for i in range(5)]
    for digest, data in objs:
        store.put(digest, data)
    store.sync()
    listed = store.packs()
    assert len(listed) == 1
    ((name, (size, _mtime)),) = listed.items()
    # the objects, then the pack's footer listing them
    assert size > sum(len(data) for _, data in objs)
    footer = store.pack_entries(name)
    assert footer is not None
    assert sorted((d, n) for d, _o, n in footer) == sorted((d, len(data)) for d, data in objs)
    rows = {r[0]: r for r in store.snapshot(0)}
    for digest, data in objs:
        _, pack, offset, length = rows[digest]
        assert pack == name and length == len(data)
        assert store.read_at(pack, offset, length) == data


def test_dropped_packs_are_missing_everywhere_until_restored(packs: Impl) -> None:
    store = _pack_store(packs)
    objs = [_obj(i, 4000) for i in range(5)]
    for digest, data in objs:
        store.put(digest, data)
    store.sync()
    digests = [d for d, _ in objs]
    rows = [r for r in store.snapshot(0) if r[0] in digests]
    (pack,) = {r[1] for r in rows}
    with store.gc_lock():
        store.drop_packs([pack])
        assert store.missing(digests) == set(digests)
        assert impl_missing(packs, digests) == set(digests)  # another instance sees it too
        for digest, pack_name, offset, length in rows:  # the bytes are still there
            assert hash_bytes(store.read_at(pack_name, offset, length)) == digest
        store.restore_packs([pack], rows)
        assert store.missing(digests) == set()
        assert impl_missing(packs, digests) == set()
        assert store.delete_pack(pack) is True
    assert pack not in store.packs()


def impl_missing(impl: Impl, digests: list[str]) -> set[str]:
    other = impl.open()
    try:
        return other.missing(digests)
    finally:
        other.close()
        impl.opened.remove(other)


def test_a_second_gc_on_one_store_is_refused(packs: Impl) -> None:
    store = _pack_store(packs)
    other = _pack_store(packs)
    with (
        store.gc_lock(),
        pytest.raises(StoreError, match="another gc is running"),
        other.gc_lock(),
    ):
        pass


def test_an_aborted_upload_leaves_nothing(packs: Impl) -> None:
    store = _pack_store(packs)
    digest, data = _obj(8, 10_000)
    upload = store.open_upload()
    upload.put(digest, data)
    upload.abort()
    assert store.missing([digest]) == {digest}
    assert store.packs() == {}
    upload = store.open_upload()
    assert upload.put(digest, data) is True
    upload.commit()
    assert impl_missing(packs, [digest]) == set()
    assert packs.open().get(digest) == data
