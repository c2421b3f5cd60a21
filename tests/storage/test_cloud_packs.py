"""Objects in packs on object storage (`BucketPackStore`), against the real emulators:
many small files are a few PUTs, another machine reads what was logged, a failed upload records
nothing and a retry completes, and the embedded SDK logs to a bucket when CAIRN_STORE says so."""

from __future__ import annotations

import os
import random
from pathlib import Path

import pytest
from emulators import S3Emulator

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import ObjectNotFoundError, StoreError
from cairn.objects import tree
from cairn.objects.ingest import Ingestor, StagedFile
from cairn.objects.keyed import KeyedObjectStore
from cairn.objects.materialize import Materializer, Wanted
from cairn.objects.packs.bucket import BucketPackStore
from cairn.objects.packs.format import decode_index
from cairn.objects.tree import FileEntry
from cairn.sdk.backend import reset_backends
from cairn.storage import open_storage


def make_files(root: Path, n: int, seed: int = 7, big: int = 0) -> dict[str, bytes]:
    rnd = random.Random(seed)
    files = {f"d{i % 7}/f{i:05d}.bin": rnd.randbytes(rnd.randint(100, 3000)) for i in range(n)}
    if big:
        files["big.bin"] = rnd.randbytes(big)
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return files


def log(
    object_store: BucketPackStore | KeyedObjectStore, root: Path, files: dict[str, bytes]
) -> list[FileEntry]:
    ingestor = Ingestor(object_store, None)
    entries = ingestor.hash_files([StagedFile(rel, root / rel) for rel in files])
    ingestor.store_tree(tree.build(entries))
    object_store.sync()
    return entries


def download(
    object_store: BucketPackStore, entries: list[FileEntry], dest: Path
) -> dict[str, bytes]:
    wanted = [Wanted(e.path, e.digest, e.size, e.chunks) for e in entries]
    Materializer(object_store, None).materialize(wanted, dest)
    return {e.path: (dest / e.path).read_bytes() for e in entries}


def test_many_small_files_are_a_few_objects_in_the_bucket(cloud_url: str, tmp_path: Path) -> None:
    files = make_files(tmp_path / "src", 1500, big=5 << 20)  # and one chunked file
    storage = open_storage(cloud_url)
    object_store = BucketPackStore(storage, tmp_path / "cache", pack_target=2 << 20)
    entries = log(object_store, tmp_path / "src", files)

    keys = list(storage.list())
    packs = [k for k in keys if k.startswith("packs/")]
    indexes = [k for k in keys if k.startswith("index/")]
    assert keys == sorted(packs + indexes)
    assert 2 <= len(packs) <= 8  # ~8 MiB in 2 MiB packs, not 1,500+ objects
    assert len(indexes) == len(packs)
    assert object_store.stats["pack_puts"] == len(packs)

    # every object is listed by exactly one index, and the index points into its pack
    listed: dict[str, tuple[str, int, int]] = {}
    for key in indexes:
        pack, size, rows = decode_index(storage.get(key))
        assert storage.size(f"packs/{pack}.pack") == size
        for digest, offset, length in rows:
            assert offset + length <= size
            listed[digest] = (pack, offset, length)
    assert {e.digest for e in entries if not e.chunks} <= listed.keys()

    # another machine (empty cache) finds everything through the index objects
    reader = BucketPackStore(open_storage(cloud_url), tmp_path / "other-cache")
    assert download(reader, entries, tmp_path / "out") == files
    # ... in a few large reads, not one request per file
    assert reader.stats["block_gets"] + reader.stats["range_gets"] < 40


def test_logging_the_same_files_again_uploads_nothing(
    s3_service: S3Emulator, tmp_path: Path
) -> None:
    files = make_files(tmp_path / "src", 300)
    url = f"s3://{s3_service.bucket()}/p"
    first = BucketPackStore(open_storage(url), tmp_path / "cache")
    log(first, tmp_path / "src", files)
    keys = list(open_storage(url).list())
    # a second process (its own cache) knows the objects from the bucket's indexes
    second = BucketPackStore(open_storage(url), tmp_path / "cache2")
    log(second, tmp_path / "src", files)
    assert second.stats["pack_puts"] == 0
    assert list(open_storage(url).list()) == keys


def test_an_open_store_sees_objects_written_later_by_another(
    s3_service: S3Emulator, tmp_path: Path
) -> None:
    url = f"s3://{s3_service.bucket()}/p"
    reader = BucketPackStore(open_storage(url), tmp_path / "r")
    writer = BucketPackStore(open_storage(url), tmp_path / "w")
    digest = writer.add(b"written after the reader opened")
    with pytest.raises(ObjectNotFoundError):
        reader.get(digest)  # not uploaded yet: sync has not run
    writer.sync()
    reader._refreshed = 0.0  # the reader re-lists indexes at most once a second
    assert reader.get(digest) == b"written after the reader opened"


def test_objects_are_readable_before_sync_and_after_their_pack_left(tmp_path: Path) -> None:
    object_store = BucketPackStore(open_storage("memory://"), None, pack_target=1000)
    digests = [
        object_store.add(bytes([i]) * 600) for i in range(10)
    ]  # several packs seal on the way
    for i, d in enumerate(digests):
        assert object_store.get(d) == bytes([i]) * 600
    object_store.sync()
    for i, d in enumerate(digests):
        assert object_store.get(d) == bytes([i]) * 600
    assert object_store.missing([*digests, "blake3:" + "0" * 64]) == {"blake3:" + "0" * 64}


def test_a_long_log_holds_only_the_locations_of_packs_still_on_their_way(
    tmp_path: Path,
) -> None:
    """A log of many objects records each pack in the local index once its upload is done,
    not all of them at the end: what it holds in memory stays bounded. A second store (a
    later process) finds every object."""
    object_store = BucketPackStore(open_storage("memory://"), tmp_path / "cache", pack_target=4000)
    most_held = 0
    digests = []
    for i in range(600):
        digests.append(object_store.add(i.to_bytes(4, "big") * 100))
        most_held = max(most_held, len(object_store._pending))
    assert most_held < 150  # a few packs of 10 objects in flight, never all 600
    object_store.sync()
    assert not object_store._pending
    assert object_store.missing(digests) == set()
    for i in (0, 299, 599):
        assert object_store.get(digests[i]) == i.to_bytes(4, "big") * 100


def test_a_failed_upload_records_nothing_and_a_retry_completes(
    s3_service: S3Emulator, tmp_path: Path
) -> None:
    bucket = s3_service.bucket()
    url = f"s3://{bucket}/p"
    files = make_files(tmp_path / "src", 50)
    object_store = BucketPackStore(open_storage(url), tmp_path / "cache")
    s3_service.boto().delete_bucket(Bucket=bucket)  # the bucket goes away mid-session
    with pytest.raises(StoreError, match="log again"):
        log(object_store, tmp_path / "src", files)
    digests = {hash_bytes(data) for data in files.values()}
    assert object_store.missing(digests) == digests  # nothing counts as stored

    s3_service.boto().create_bucket(Bucket=bucket)
    entries = log(object_store, tmp_path / "src", files)
    again = BucketPackStore(open_storage(url), tmp_path / "fresh-cache")
    assert download(again, entries, tmp_path / "out") == files


def test_unbatched_object_db_is_one_key_per_object(s3_service: S3Emulator, tmp_path: Path) -> None:
    """The layout BucketPackStore replaces (kept for comparison and small stores)."""
    files = make_files(tmp_path / "src", 40)
    storage = open_storage(f"s3://{s3_service.bucket()}/loose")
    entries = log(KeyedObjectStore(storage), tmp_path / "src", files)
    keys = list(storage.list())
    assert len(keys) == len({e.digest for e in entries}) + 1 + 7  # files, root tree, folders
    assert all(k.startswith("objects/blake3/") for k in keys)


def test_embedded_sdk_logs_to_the_bucket_named_by_cairn_store(
    s3_service: S3Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3_service.bucket()
    monkeypatch.setenv("CAIRN_STORE", f"s3://{bucket}/team/store")
    monkeypatch.setenv("CAIRN_QUIET", "1")
    reset_backends()
    files = make_files(tmp_path / "src", 200, big=4 << 20)
    try:
        with cairn.init(project="p", job_type="prep") as run:
            art = cairn.Artifact("ds", type="dataset")
            art.add_dir(tmp_path / "src")
            run.log_artifact(art)
        home = Path(os.environ["CAIRN_DIR"])
        assert not (home / "store" / "packs").exists()  # nothing went to the local store
        keys = [o["Key"] for o in s3_service.boto().list_objects_v2(Bucket=bucket)["Contents"]]
        assert keys and all(k.startswith("team/store/") for k in keys)
        assert len(keys) <= 6

        # a fresh process on this machine, with the local index cache gone, downloads it
        reset_backends()
        import shutil

        shutil.rmtree(home / "cache")
        path = cairn.Api("p").artifact("ds:latest").download(root=tmp_path / "dl")
        got = {
            p.relative_to(path).as_posix(): p.read_bytes()
            for p in Path(path).rglob("*")
            if p.is_file()
        }
        assert got == files
    finally:
        reset_backends()
