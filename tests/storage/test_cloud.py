"""The object storage backends beyond the shared contract: thousands of keys, signed URLs,
endpoints, large values read as streams, and the errors a user sees when something is off."""

from __future__ import annotations

import os
import sys
import time
import urllib.request
import warnings
from concurrent.futures import ThreadPoolExecutor

import pytest
from emulators import S3Emulator

from cairn.errors import StoreError
from cairn.storage import open_storage
from cairn.storage.cloud import CloudStorage


def fill(store: CloudStorage, keys: list[str]) -> None:
    with ThreadPoolExecutor(16) as pool:
        assert all(pool.map(lambda k: store.put(k, k.encode()), keys))


def test_listing_thousands_of_keys(cloud_url: str, request: pytest.FixtureRequest) -> None:
    store = open_storage(cloud_url)
    assert isinstance(store, CloudStorage)
    many = 2500 if store.scheme == "s3" else 1000
    keys = [f"objects/blake3/{i % 16:02x}/{i:06d}" for i in range(many)]
    keys += [f"objects/blake3/{i % 16:02x}{i % 3}/x{i:04d}" for i in range(50)]
    keys += ["objects/zzz", "objectsx", "packs/a.pack"]
    if store.scheme == "s3":  # thousands, seeded in moto's backend: one PUT each takes seconds
        s3: S3Emulator = request.getfixturevalue("s3_service")
        s3.seed(store.bucket, {f"{store.prefix}/{k}": k.encode() for k in keys})
    else:
        fill(store, keys)
    assert list(store.list()) == sorted(keys)  # more than one page of 1,000, in order
    assert list(store.list("objects/")) == sorted(k for k in keys if k.startswith("objects/"))
    for prefix in ("objects/blake3/0a", "objects/blake3/0a/", "objects", "objects/blake3/0b/0001"):
        assert list(store.list(prefix)) == sorted(k for k in keys if k.startswith(prefix))
    sample = keys[::97]
    assert store.missing([*sample, "objects/blake3/00/nope", "objects/blake3"]) == {
        "objects/blake3/00/nope",
        "objects/blake3",
    }


def test_signed_urls_let_a_client_without_credentials_get_and_put(cloud_url: str) -> None:
    # moto and the GCS emulator accept any signature: what the URLs sign is checked in
    # test_signed_url_inputs.py
    store = open_storage(cloud_url)
    assert isinstance(store, CloudStorage)
    store.put("objects/a", b"signed content")
    url = store.signed_url("objects/a", "GET", expires=300)
    assert "objects/a" in url
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.read() == b"signed content"

    put_url = store.signed_url("objects/b", "PUT", expires=300)
    headers = {"Content-Type": "application/octet-stream"}
    if cloud_url.startswith("az://"):
        headers["x-ms-blob-type"] = "BlockBlob"
    req = urllib.request.Request(put_url, data=b"uploaded directly", method="PUT", headers=headers)
    urllib.request.urlopen(req, timeout=10).close()
    assert store.get("objects/b") == b"uploaded directly"


def test_large_values_open_as_seekable_streams(s3_service: S3Emulator) -> None:
    store = open_storage(f"s3://{s3_service.bucket()}/big")
    data = bytes(range(256)) * (40 * 4096 + 1)  # 40 MiB and a bit: read as a stream
    assert store.put("v", data)
    with store.open("v") as f:
        assert f.read(10) == data[:10]
        f.seek(30 << 20)
        assert f.read(1000) == data[30 << 20 : (30 << 20) + 1000]
        f.seek(-5, 2)
        assert f.read() == data[-5:]
    assert store.size("v") == len(data)


def test_endpoint_in_the_url_or_as_an_argument(
    s3_service: S3Emulator, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_service.bucket()
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    in_url = open_storage(f"s3://{bucket}/p?endpoint={s3_service.endpoint}")
    in_url.put("k", b"v")
    assert in_url.url == f"s3://{bucket}/p?endpoint={s3_service.endpoint}"
    assert open_storage(in_url.url).get("k") == b"v"  # the URL alone reopens it
    assert open_storage(f"s3://{bucket}/p", endpoint=s3_service.endpoint).get("k") == b"v"


def test_keys_live_under_the_prefix_and_prefixes_do_not_mix(s3_service: S3Emulator) -> None:
    bucket = s3_service.bucket()
    a = open_storage(f"s3://{bucket}/team-a/store")
    b = open_storage(f"s3://{bucket}/team-a/store2")
    a.put("k", b"a")
    b.put("k", b"b")
    assert (a.get("k"), b.get("k")) == (b"a", b"b")
    assert list(a.list()) == ["k"]
    keys = sorted(o["Key"] for o in s3_service.boto().list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == ["team-a/store/k", "team-a/store2/k"]


def test_a_missing_bucket_is_a_clear_error(s3_service: S3Emulator) -> None:
    store = open_storage("s3://no-such-bucket-here/p")
    for call in (lambda: store.put("k", b"v"), lambda: store.get("k"), lambda: list(store.list())):
        with pytest.raises(StoreError, match=r"s3://no-such-bucket-here/p .*does not exist"):
            call()


def test_an_unreachable_endpoint_fails_with_a_clear_error_not_a_hang() -> None:
    start = time.monotonic()
    store = open_storage("s3://bucket/p?endpoint=http://127.0.0.1:9&region=us-east-1")
    with pytest.raises(StoreError, match="s3://bucket/p"):
        store.exists("k")
    assert time.monotonic() - start < 30


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("s3:///prefix", "names no bucket"),
        ("s3://bucket/p?colour=blue", "unknown option 'colour'"),
        ("ftp://host/x", "not supported"),
    ],
)
def test_bad_storage_urls(url: str, message: str) -> None:
    with pytest.raises(StoreError, match=message):
        open_storage(url)


@pytest.mark.parametrize(("scheme", "extra"), [("s3", "s3"), ("gs", "gcs"), ("az", "azure")])
def test_without_obstore_the_error_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch, scheme: str, extra: str
) -> None:
    from cairn.storage import cloud

    monkeypatch.setattr(cloud, "_clients", {})
    monkeypatch.setitem(sys.modules, "obstore", None)  # as if it were not installed
    with pytest.raises(StoreError, match=rf"pip install 'cairn\[{extra}\]'"):
        open_storage(f"{scheme}://bucket/prefix")


def test_a_forked_child_gets_an_error_instead_of_hanging(s3_service: S3Emulator) -> None:
    store = open_storage(f"s3://{s3_service.bucket()}/p")
    store.put("k", b"v")  # the parent has used object storage
    read, write = os.pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() with threads running
        warnings.simplefilter("ignore", RuntimeWarning)  # JAX's (Keras tests) fork warning
        pid = os.fork()
    if pid == 0:  # the child: report what happened through the pipe, then leave at once
        try:
            try:
                open_storage(store.url).get("k")
                outcome = b"no error"
            except StoreError as exc:
                outcome = str(exc).encode()
            os.write(write, outcome)
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    message = os.read(read, 4096).decode()
    os.close(read)
    assert status == 0
    assert "forked" in message and "'spawn'" in message
    assert store.get("k") == b"v"  # the parent goes on as before
