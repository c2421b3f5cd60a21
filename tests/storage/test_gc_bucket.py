"""`cairn gc` on packs in a bucket (moto's S3 server): what is dead goes, what is live stays
downloadable, and loggers running meanwhile (with index caches of their own) never commit a
version whose objects gc deleted."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from emulators import S3Emulator
from typer.testing import CliRunner

import cairn
from cairn.objects.gc import GcReport, collect
from cairn.objects.packs.bucket import BucketPackStore
from cairn.sdk.backend import get_backend, reset_backends
from cairn.service.liveness import live_objects
from cairn.storage import open_storage


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    reset_backends()
    yield
    reset_backends()


@pytest.fixture
def store(s3_service: S3Emulator, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """(bucket, store URL); the embedded SDK logs there (CAIRN_STORE)."""
    bucket = s3_service.bucket()
    url = f"s3://{bucket}/cairn"
    monkeypatch.setenv("CAIRN_STORE", url)
    return bucket, url


def _log(name: str, files: dict[str, bytes], src: Path) -> cairn.Artifact:
    for rel, data in files.items():
        (src / rel).parent.mkdir(parents=True, exist_ok=True)
        (src / rel).write_bytes(data)
    with cairn.init(project="p", save_code=False) as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(src)
        run.log_artifact(art)
    return art


def _keys(s3: S3Emulator, bucket: str, prefix: str = "cairn/") -> dict[str, int]:
    pages = s3.boto().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    return {o["Key"]: o["Size"] for page in pages for o in page.get("Contents", [])}


def _age(bucket: str, keys: set[str], days: float = 2) -> None:
    """Make bucket objects look ``days`` older (moto's in-process backend)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.s3.models import s3_backends

    backend = s3_backends[DEFAULT_ACCOUNT_ID]["global"]
    for key in keys:
        obj = backend.get_object(bucket, key)
        assert obj is not None, key
        obj.last_modified = obj.last_modified - timedelta(days=days)


def _gc(url: str, cache: Path, **kw: Any) -> GcReport:
    """gc as an admin runs it: its own store object and index cache, the same database."""
    registry = get_backend().registry
    object_store = BucketPackStore(open_storage(url), cache)
    args: dict[str, Any] = {"grace_seconds": 0, "dry_run": False, "settle_seconds": 0}
    args.update(kw)
    try:
        return collect(object_store, lambda: live_objects(registry), **args)
    finally:
        object_store.close()


def _download(ref: str, where: Path) -> dict[str, bytes]:
    art = cairn.Api("p").artifact(ref)
    root = Path(art.download(root=where))
    art.verify(root)
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _packs(keys: dict[str, int]) -> set[str]:
    return {k for k in keys if k.startswith("cairn/packs/")}


def _pack_bytes(keys: dict[str, int]) -> int:
    return sum(size for key, size in keys.items() if key.startswith("cairn/packs/"))


def test_dead_packs_deleted_mostly_dead_rewritten_live_downloadable(
    store: tuple[str, str], s3_service: S3Emulator, tmp_path: Path
) -> None:
    bucket, url = store
    keep = {"keep.txt": b"kept\n" * 100}
    big = os.urandom(600_000)
    _log("mix", {**keep, "big.bin": big}, tmp_path / "mix")  # pack 1: keep + big
    (tmp_path / "mix" / "big.bin").unlink()
    _log("mix", keep, tmp_path / "mix")  # pack 2: only the new tree (keep.txt is reused)
    _log("gone", {"gone.bin": os.urandom(400_000)}, tmp_path / "gone")  # pack 3
    cairn.Api("p").artifact("mix:v0").delete()
    cairn.Api("p").artifact("gone:v0").delete()
    before = _keys(s3_service, bucket)
    assert _download("mix:latest", tmp_path / "warm") == keep  # the SDK's cache is warm

    report = _gc(url, tmp_path / "admin-cache")
    assert report.packs_rewritten == 1 and report.packs_deleted == 1
    assert report.bytes_freed > 1_000_000
    after = _keys(s3_service, bucket)
    gone = _packs(before) - _packs(after)
    assert len(gone) == 2 and set(report.rewritten + report.deleted) == {
        k.split("/")[-1][: -len(".pack")] for k in gone
    }
    for pack in report.rewritten + report.deleted:
        assert f"cairn/index/{pack}.idx" not in after
    assert _pack_bytes(before) - _pack_bytes(after) == report.bytes_freed
    assert report.store_bytes_before - report.store_bytes_after == report.bytes_freed
    print(f"bucket gc freed {report.bytes_freed} bytes: {report.to_dict()}")

    # this process's index cache still locates keep.txt in the rewritten pack: it notices
    assert _download("mix:latest", tmp_path / "stale") == keep
    # and a fresh process (a cache that never saw the old packs) too
    reset_backends()
    assert _download("mix:latest", tmp_path / "fresh") == keep
    assert _gc(url, tmp_path / "admin-cache").bytes_freed == 0


def test_dry_run_and_grace_period_change_nothing(
    store: tuple[str, str], s3_service: S3Emulator, tmp_path: Path
) -> None:
    bucket, url = store
    _log("gone", {"gone.bin": os.urandom(300_000)}, tmp_path / "gone")
    _log("kept", {"k.bin": os.urandom(1000)}, tmp_path / "kept")
    cairn.Api("p").artifact("gone:v0").delete()
    s3_service.boto().put_object(Bucket=bucket, Key="cairn/uploads/u1/x.pack", Body=b"x" * 10)
    before = _keys(s3_service, bucket)

    recent = _gc(url, tmp_path / "c", grace_seconds=3600)
    assert recent.bytes_freed == 0 and recent.packs_deleted == 0 and recent.uploads_removed == 0
    assert _keys(s3_service, bucket) == before

    dry = _gc(url, tmp_path / "c", dry_run=True)
    assert dry.dry_run and dry.packs_deleted == 1 and dry.uploads_removed == 1
    assert dry.bytes_freed >= 300_000
    assert _keys(s3_service, bucket) == before

    real = _gc(url, tmp_path / "c")
    assert real.bytes_freed == dry.bytes_freed and real.packs_deleted == 1
    kept = (tmp_path / "kept" / "k.bin").read_bytes()
    assert _download("kept:v0", tmp_path / "out") == {"k.bin": kept}


def test_stale_uploads_removed_fresh_kept(
    store: tuple[str, str], s3_service: S3Emulator, tmp_path: Path
) -> None:
    bucket, url = store
    client = s3_service.boto()
    client.put_object(Bucket=bucket, Key="cairn/uploads/u1/old.pack", Body=b"o" * 5000)
    client.put_object(Bucket=bucket, Key="cairn/uploads/u2/new.pack", Body=b"n" * 7000)
    _age(bucket, {"cairn/uploads/u1/old.pack"})
    report = _gc(url, tmp_path / "c", grace_seconds=3600)
    assert report.uploads_removed == 1 and report.bytes_freed == 5000
    assert set(_keys(s3_service, bucket, "cairn/uploads/")) == {"cairn/uploads/u2/new.pack"}


def test_only_packs_older_than_the_grace_period_are_touched(
    store: tuple[str, str], s3_service: S3Emulator, tmp_path: Path
) -> None:
    bucket, url = store
    _log("old", {"o.bin": os.urandom(200_000)}, tmp_path / "old")
    old_packs = _packs(_keys(s3_service, bucket))
    _log("new", {"n.bin": os.urandom(200_000)}, tmp_path / "new")
    cairn.Api("p").artifact("old:v0").delete()
    cairn.Api("p").artifact("new:v0").delete()
    _age(bucket, old_packs)
    before = _keys(s3_service, bucket)
    report = _gc(url, tmp_path / "c", grace_seconds=3600)
    assert report.packs_deleted == 1
    assert _packs(before) - _packs(_keys(s3_service, bucket)) == old_packs


@pytest.mark.parametrize("at_read", [2, 3, 4])
def test_version_committed_during_gc_keeps_its_objects(
    store: tuple[str, str], s3_service: S3Emulator, tmp_path: Path, at_read: int
) -> None:
    """Found by the read after marking (2), before the indexes go (3), or after they went
    and before the packs do (4: the index is put back)."""
    bucket, url = store
    files = {"f.bin": os.urandom(100_000)}
    art = _log("a", files, tmp_path / "a")
    root = art.digest
    cairn.Api("p").artifact("a:v0").delete()
    registry = get_backend().registry
    before = _keys(s3_service, bucket)
    calls = 0

    def roots() -> tuple[list[str], list[str]]:
        nonlocal calls
        calls += 1
        live, diffs = live_objects(registry)
        if calls == at_read:  # a logger reused the old tree and committed meanwhile
            registry.commit_version(
                "p", "again", "dataset", digest=root, size=100_000, file_count=1
            )
            live = [*live, root]
        return live, diffs

    object_store = BucketPackStore(open_storage(url), tmp_path / "c")
    report = collect(object_store, roots, grace_seconds=0, dry_run=False, settle_seconds=0)
    object_store.close()
    assert report.bytes_freed == 0 and report.objects_dropped == 0
    assert report.objects_rescued == (2 if at_read == 4 else 0)
    assert _keys(s3_service, bucket) == before  # the index is back, the pack never went
    reset_backends()
    assert _download("again:v0", tmp_path / "out") == files


def test_a_logger_with_a_stale_index_cache_sees_the_deletion_before_committing(
    store: tuple[str, str], s3_service: S3Emulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The concurrent-logger race: a logger's cache lists an old pack, the log reuses an object
    in it, gc deletes that pack before the log commits. The log's last check (after its sync)
    asks the bucket, sees the object gone, stores it again from the user's file, and commits a
    complete version."""
    bucket, url = store
    data = tmp_path / "data"
    weights = os.urandom(50_000)
    first = _log("model", {"weights.bin": weights}, data)
    first.delete()  # the blob is now referenced by no live version: gc may drop it
    old_packs = _packs(_keys(s3_service, bucket))
    _age(bucket, old_packs)

    object_store = get_backend().object_store
    assert isinstance(object_store, BucketPackStore)
    real_sync = object_store.sync
    reports: list[GcReport] = []

    def sync_then_collect() -> None:
        real_sync()
        if not reports:  # another machine's gc (an index cache of its own) deletes the old pack
            reports.append(_gc(url, tmp_path / "admin", grace_seconds=3600))

    (data / "config.json").write_text("{}")
    with cairn.init(project="p", save_code=False) as run:
        monkeypatch.setattr(object_store, "sync", sync_then_collect)
        second = cairn.Artifact("model", type="dataset")
        second.add_dir(data)
        run.log_artifact(second)
        monkeypatch.setattr(object_store, "sync", real_sync)
    assert reports[0].packs_deleted == 1
    assert not (old_packs & _packs(_keys(s3_service, bucket)))
    assert second.stats is not None and second.stats.new_bytes >= 50_000  # stored again
    reset_backends()
    assert _download(f"model:{second.version}", tmp_path / "out") == {
        "weights.bin": weights,
        "config.json": b"{}",
    }


def test_missing_forgets_vanished_packs_and_refresh_drops_them(
    s3_service: S3Emulator, tmp_path: Path
) -> None:
    url = f"s3://{s3_service.bucket()}/x"
    writer = BucketPackStore(open_storage(url), tmp_path / "w")
    digest = writer.add(b"hello" * 100)
    writer.sync()
    reader = BucketPackStore(open_storage(url), tmp_path / "r")
    assert not reader.missing([digest])
    (pack,) = reader.index.known_packs()
    writer.storage.delete(f"index/{pack}.idx")
    # within VERIFY_AGE a lookup may trust the cache; after a sync it never does
    reader.sync()
    assert reader.missing([digest]) == {digest}
    assert not reader.has(digest)
    other = BucketPackStore(open_storage(url), tmp_path / "o")  # saw the pack before?
    assert other.missing([digest]) == {digest}
    writer.refresh()
    assert writer.index.rows() == [] and writer.index.known_packs() == set()
    for db in (writer, reader, other):
        db.close()


def test_a_stale_cache_reads_the_copy_of_a_rewritten_pack(
    s3_service: S3Emulator, tmp_path: Path
) -> None:
    url = f"s3://{s3_service.bucket()}/x"
    writer = BucketPackStore(open_storage(url), tmp_path / "w")
    data = b"live" * 1000
    digest = writer.add(data)
    writer.sync()
    reader = BucketPackStore(open_storage(url), tmp_path / "r")  # locates it in the pack
    (old,) = reader.index.known_packs()
    # what gc does: copy to a new pack (indexed), then delete the old index and pack
    writer.put(digest, data)
    writer.sync()
    writer.storage.delete(f"index/{old}.idx")
    writer.storage.delete(f"packs/{old}.pack")
    assert reader.get(digest) == data
    assert old not in reader.index.known_packs()
    writer.close()
    reader.close()


def test_cli_gc_on_a_bucket(
    store: tuple[str, str],
    s3_service: S3Emulator,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from cairn.cli.main import app

    bucket, url = store
    _log("gone", {"gone.bin": os.urandom(300_000)}, tmp_path / "gone")
    _log("kept", {"k.bin": b"k" * 1000}, tmp_path / "kept")
    cairn.Api("p").artifact("gone:v0").delete()
    reset_backends()
    db = f"sqlite:///{os.environ['CAIRN_DIR']}/cairn.db"
    monkeypatch.delenv("CAIRN_STORE")  # as on a server's machine: only the options say where
    monkeypatch.delenv("AWS_ENDPOINT_URL")
    runner = CliRunner()
    args = ["gc", "--store", url, "--store-endpoint", s3_service.endpoint, "--database-url", db]

    dry = runner.invoke(app, [*args, "--grace", "0", "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    assert json.loads(dry.stdout)["bytes_freed"] >= 300_000
    recent = runner.invoke(app, [*args, "--json"])  # default grace: 24 h
    assert recent.exit_code == 0 and json.loads(recent.stdout)["bytes_freed"] == 0
    done = runner.invoke(app, [*args, "--grace", "0", "--json"])
    assert done.exit_code == 0, done.output
    report = json.loads(done.stdout)
    assert report["packs_deleted"] == 1 and report["store"].startswith(f"s3://{bucket}/cairn")
    text = runner.invoke(app, [*args, "--grace", "0"])
    assert text.exit_code == 0 and text.stdout.startswith("Freed 0 B")

    # embedded mode on a bucket: CAIRN_STORE alone
    monkeypatch.setenv("CAIRN_STORE", url)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_service.endpoint)
    reset_backends()
    embedded = runner.invoke(app, ["gc", "--grace", "0", "--json"])
    assert embedded.exit_code == 0 and json.loads(embedded.stdout)["bytes_freed"] == 0
    assert _download("kept:v0", tmp_path / "out") == {"k.bin": b"k" * 1000}

    refused = runner.invoke(app, ["gc"], env={"CAIRN_URL": "http://localhost:1"})
    assert refused.exit_code == 1 and "embedded local store only" in refused.output
    assert runner.invoke(app, ["gc", "--store-endpoint", "http://x"]).exit_code == 1
    assert runner.invoke(app, ["gc", "--store", "ftp://x/y"]).exit_code == 1
