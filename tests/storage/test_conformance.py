"""One contract, every backend: the behaviour `cairn.storage.base` promises.

Each backend is a factory in BACKENDS that returns the URL of a fresh, empty store for one
test; the store is opened with `open_storage`, as Cairn itself does. The object storage backends
run against real emulators on 127.0.0.1 (tests/storage/emulators.py), each test in a bucket of
its own; an emulator that cannot be started fails the test in CI instead of skipping it.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import emulators
import pytest

from cairn.errors import ObjectNotFoundError
from cairn.storage import Storage, open_storage
from cairn.storage.local import LocalStorage


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "store")


def _memory(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return "memory://"


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    service: emulators.S3Emulator = request.getfixturevalue("s3_service")
    return f"s3://{service.bucket()}/some/prefix"


def _gcs(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    service: emulators.GCSEmulator = request.getfixturevalue("gcs_service")
    return f"gs://{service.bucket()}/some/prefix"


def _azure(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    service: emulators.AzureEmulator = request.getfixturevalue("azure_service")
    return f"az://{service.container()}/some/prefix"


# name -> (URL of a fresh empty store, whether the data outlives the Storage object)
BACKENDS: dict[str, tuple[Callable[[pytest.FixtureRequest, Path], str], bool]] = {
    "local": (_local, True),
    "memory": (_memory, False),
    "s3": (_s3, True),
    "gcs": (_gcs, True),
    "azure": (_azure, True),
}


@pytest.fixture(params=sorted(BACKENDS))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    make_url, _ = BACKENDS[request.param]
    return open_storage(make_url(request, tmp_path))


@pytest.fixture(params=sorted(name for name, (_, durable) in BACKENDS.items() if durable))
def durable_store(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    make_url, _ = BACKENDS[request.param]
    return open_storage(make_url(request, tmp_path))


KEY = "objects/blake3/ab/cdef0123"


def test_put_then_get_exists_size(store: Storage) -> None:
    assert not store.exists(KEY)
    assert store.put(KEY, b"hello world") is True
    assert store.exists(KEY)
    assert store.get(KEY) == b"hello world"
    assert store.size(KEY) == 11


def test_put_accepts_memoryview_and_keeps_its_own_copy(store: Storage) -> None:
    buf = bytearray(b"0123456789")
    assert store.put(KEY, memoryview(buf)[2:7])
    buf[:] = b"xxxxxxxxxx"  # the caller reuses its buffer after put returns
    assert store.get(KEY) == b"23456"


def test_empty_value(store: Storage) -> None:
    assert store.put(KEY, b"")
    assert store.exists(KEY)
    assert store.get(KEY) == b""
    assert store.size(KEY) == 0


def test_large_value_roundtrips(store: Storage) -> None:
    data = bytes(range(256)) * (5 * 4096 + 3)  # a little over 5 MiB
    assert store.put(KEY, data)
    assert store.get(KEY) == data
    assert store.size(KEY) == len(data)


def test_put_of_existing_key_returns_false_and_keeps_first_value(store: Storage) -> None:
    assert store.put(KEY, b"first") is True
    assert store.put(KEY, b"second, longer value") is False
    assert store.put(KEY, b"first") is False
    assert store.get(KEY) == b"first"
    assert store.size(KEY) == 5


def test_missing_answers_for_many_keys(store: Storage) -> None:
    store.put("a/1", b"1")
    store.put("a/3", b"3")
    assert store.missing(["a/1", "a/2", "a/3", "b/4"]) == {"a/2", "b/4"}
    assert store.missing([]) == set()
    assert store.missing(iter(["a/1"])) == set()


def test_missing_key_errors(store: Storage) -> None:
    for call in (store.get, store.open, store.size):
        with pytest.raises(ObjectNotFoundError, match="objects/blake3/ab/cdef0123"):
            call(KEY)


def test_a_key_prefix_is_not_a_key(store: Storage) -> None:
    # on a disk 'objects/blake3' is a folder; it must still not look like a stored object
    store.put(KEY, b"x")
    for prefix in ("objects", "objects/blake3", "objects/blake3/ab"):
        assert not store.exists(prefix)
        assert store.missing([prefix, KEY]) == {prefix}
        for call in (store.get, store.open, store.size):
            with pytest.raises(ObjectNotFoundError):
                call(prefix)
        store.delete(prefix)  # a no-op, like deleting any missing key
    assert store.get(KEY) == b"x"


def test_open_reads_the_value(store: Storage) -> None:
    data = b"line one\nline two\n" * 1000
    store.put(KEY, data)
    with store.open(KEY) as f:
        assert f.read(9) == b"line one\n"
        assert f.read() == data[9:]


def test_delete(store: Storage) -> None:
    store.put(KEY, b"x")
    store.put(KEY + "0", b"y")
    store.delete(KEY)
    assert not store.exists(KEY)
    assert store.missing([KEY]) == {KEY}
    with pytest.raises(ObjectNotFoundError):
        store.get(KEY)
    assert store.get(KEY + "0") == b"y"
    store.delete(KEY)  # deleting a missing key is a no-op
    # after a delete the key can be written again, with any value
    assert store.put(KEY, b"again") is True
    assert store.get(KEY) == b"again"


def test_delete_everything_then_write_again(store: Storage) -> None:
    store.put(KEY, b"x")
    for key in list(store.list()):
        store.delete(key)
    assert list(store.list()) == []
    assert store.put(KEY, b"x") is True
    assert store.get(KEY) == b"x"


KEYS = [
    "objects/blake3/ab/0001",
    "objects/blake3/ab/0002",
    "objects/blake3/ac/0001",
    "objects/blake3/b0/0001",
    "objects/sha256/ab/0001",
    "refs/a",
    "refs/a.txt",
    "refs/a0",
    "refs/ab/c",
    "top",
]


def test_list_all_keys_sorted_once_each(store: Storage) -> None:
    for key in reversed(KEYS):
        store.put(key, key.encode())
    assert list(store.list()) == sorted(KEYS)
    assert list(store.list("")) == sorted(KEYS)


@pytest.mark.parametrize(
    "prefix",
    [
        "objects/",
        "objects/blake3/",
        "objects/blake3/ab/",
        "objects/blake3/a",  # a prefix that ends inside a folder name
        "objects/blake3/ab/000",  # ... and inside a key
        "objects/blake3/ab/0001",  # a whole key
        "refs/a",
        "refs/ab",
        "refs/ab/",
        "t",
        "objects",  # no trailing '/'
        "nothing/",
        "objects/blake3/zz/",
        "zzz",
    ],
)
def test_list_with_prefix(store: Storage, prefix: str) -> None:
    for key in KEYS:
        store.put(key, b"")
    assert list(store.list(prefix)) == sorted(k for k in KEYS if k.startswith(prefix))


def test_list_of_empty_store(store: Storage) -> None:
    assert list(store.list()) == []
    assert list(store.list("objects/")) == []


def test_sync_keeps_data_readable(store: Storage) -> None:
    store.sync()  # nothing written yet
    store.put(KEY, b"durable")
    store.sync()
    store.sync()
    assert store.get(KEY) == b"durable"
    store.put(KEY + "1", b"more")
    store.sync()
    assert store.get(KEY + "1") == b"more"


def test_local_path_when_given_holds_the_value(store: Storage) -> None:
    store.put(KEY, b"on disk")
    path = store.local_path(KEY)
    if path is not None:
        assert path.read_bytes() == b"on disk"


def test_reopened_store_sees_the_data(durable_store: Storage) -> None:
    store = durable_store
    store.put(KEY, b"kept")
    again = open_storage(store.url)
    assert again.get(KEY) == b"kept"
    assert again.put(KEY, b"other") is False
    assert list(again.list()) == [KEY]


def test_concurrent_puts_of_one_key(store: Storage) -> None:
    n = 16
    data = b"same content " * 10000
    barrier = threading.Barrier(n)
    results: list[bool] = []
    errors: list[BaseException] = []
    lock = threading.Lock()

    def writer() -> None:
        try:
            barrier.wait()
            written = store.put(KEY, data)
            with lock:
                results.append(written)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sorted(results) == [False] * (n - 1) + [True]  # exactly one writer stored it
    assert store.get(KEY) == data
    assert list(store.list()) == [KEY]


def test_concurrent_puts_of_many_keys_in_new_folders(store: Storage) -> None:
    n = 16
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def writer(i: int) -> None:
        try:
            barrier.wait()
            for j in range(20):
                # every thread writes into the same new folders at once
                assert store.put(f"objects/blake3/{j:02x}/{i:04x}", f"{i}-{j}".encode())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    keys = list(store.list("objects/"))
    assert len(keys) == n * 20
    assert keys == sorted(keys)
    for i in range(n):
        for j in range(20):
            assert store.get(f"objects/blake3/{j:02x}/{i:04x}") == f"{i}-{j}".encode()


def test_get_range_reads_part_of_a_value(store: Storage) -> None:
    data = bytes(range(256)) * 64
    store.put(KEY, data)
    assert store.get_range(KEY, 0, 10) == data[:10]
    assert store.get_range(KEY, 1000, 3000) == data[1000:4000]
    assert store.get_range(KEY, len(data) - 5, 5) == data[-5:]
    assert store.get_range(KEY, 7, 0) == b""
    with pytest.raises(ObjectNotFoundError):
        store.get_range(KEY + "x", 0, 1)


def test_iter_bytes_streams_the_whole_value(store: Storage) -> None:
    data = os.urandom(300_000)
    store.put(KEY, data)
    pieces = list(store.iter_bytes(KEY, chunk=64 << 10))
    assert b"".join(pieces) == data
    assert len(pieces) >= 2
    store.put(KEY + "0", b"")
    assert b"".join(store.iter_bytes(KEY + "0")) == b""
    with pytest.raises(ObjectNotFoundError):
        list(store.iter_bytes(KEY + "x"))


def test_list_info_gives_size_and_time_of_each_key(store: Storage) -> None:
    before = time.time()
    for key in KEYS:
        store.put(key, key.encode())
    info = list(store.list_info("objects/"))
    assert [k for k, _, _ in info] == sorted(k for k in KEYS if k.startswith("objects/"))
    for key, size, mtime in info:
        assert size == len(key)
        # the service's clock may differ a little from this machine's
        assert before - 120 < mtime < time.time() + 120
    assert [k for k, _, _ in store.list_info()] == sorted(KEYS)


def test_copy_to_a_new_key_and_over_an_old_one(store: Storage) -> None:
    store.put("a/src", b"the source")
    store.copy("a/src", "a/dst")
    assert store.get("a/dst") == b"the source"
    store.put("a/other", b"other value")
    store.copy("a/other", "a/dst")  # overwrites
    assert store.get("a/dst") == b"other value"
    assert store.get("a/src") == b"the source"
    with pytest.raises(ObjectNotFoundError):
        store.copy("a/none", "a/dst2")


def test_signer_only_on_object_storage(store: Storage) -> None:
    if store.url.split("://", 1)[0] in ("s3", "gs", "az"):
        assert store.signer is not None
        store.put(KEY, b"signed")
        urls = store.signer.signed_urls([KEY, KEY + "0"], "GET", 60)
        assert len(urls) == 2 and all(u.startswith("http") for u in urls)
    else:
        assert store.signer is None


# --- local disk only ------------------------------------------------------------------------


def test_local_list_ignores_interrupted_writes(tmp_path: Path) -> None:
    store = LocalStorage(tmp_path / "store")
    store.put(KEY, b"x")
    # a writer killed mid-put leaves its temp file behind; it is not a key
    (tmp_path / "store" / "tmp" / "0123abcd").write_bytes(b"partial")
    assert list(store.list()) == [KEY]
    assert store.clean_tmp() == 1
    assert list(store.list()) == [KEY]
