"""Garbage collection of the packed store: what is unreachable goes, what is live stays."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.objects.gc import collect
from cairn.objects.packs.local import LocalPackStore
from cairn.sdk.backend import get_backend, reset_backends
from cairn.service.liveness import live_objects


def _write(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return root


def _log(name: str, src: Path) -> cairn.Artifact:
    with cairn.init(project="p", save_code=False) as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(src)
        run.log_artifact(art)
    return art


def _odb() -> LocalPackStore:
    object_store = get_backend().object_store
    assert isinstance(object_store, LocalPackStore)
    return object_store


def _gc(**kw: object) -> dict[str, Any]:
    backend = get_backend()
    object_store = _odb()
    args: dict[str, object] = {"grace_seconds": 0, "dry_run": False, "settle_seconds": 0}
    args.update(kw)
    report = collect(object_store, lambda: live_objects(backend.registry), **args)  # type: ignore[arg-type]
    return report.to_dict()


def _store_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "store" / "packs").rglob("*.pack"))


def _check(ref: str, files: dict[str, bytes], where: Path) -> None:
    art = cairn.Api().artifact(ref)
    root = Path(art.download(where))
    art.verify(root)
    got = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}
    assert got == files


def _big(seed: int, n: int = 5 << 20) -> bytes:
    return (seed.to_bytes(4, "little") * (n // 4 + 1))[:n]


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    reset_backends()
    yield
    reset_backends()


def test_deleted_version_freed_and_rest_intact(tmp_path: Path, cairn_env: Path) -> None:
    shared = {"shared.txt": b"shared" * 1000}
    # a: small files + a chunked large file; b: other content; both share shared.txt
    a_files = {**shared, "only-a.bin": os.urandom(200_000), "big.bin": os.urandom(5 << 20)}
    b_files = {**shared, "only-b.bin": os.urandom(100_000), "sub/x.txt": b"x"}
    _log("a", _write(tmp_path / "a", a_files))
    _log("b", _write(tmp_path / "b", b_files))
    before = _store_bytes(cairn_env)

    dry = _gc(dry_run=True)  # nothing dead yet
    assert dry["bytes_freed"] == 0 and dry["objects_dropped"] == 0

    cairn.Api().artifact("p/a:v0").delete()
    dry = _gc(dry_run=True)
    assert dry["bytes_freed"] >= 5 << 20
    assert _store_bytes(cairn_env) == before  # a dry run changes nothing

    report = _gc()
    assert report["objects_dropped"] >= 5  # chunks, chunk list, blob, root tree
    assert report["packs_rewritten"] == 1  # shared.txt, live, was in a's pack
    assert report["bytes_freed"] == dry["bytes_freed"]
    after = _store_bytes(cairn_env)
    assert before - after == report["bytes_freed"]
    assert after < before - (5 << 20)
    _check("p/b:v0", b_files, tmp_path / "out-b")

    # everything left is reachable and a second gc finds nothing
    again = _gc()
    assert again["bytes_freed"] == 0 and again["packs_deleted"] == 0
    _check("p/b:v0", b_files, tmp_path / "out-b2")


def test_partly_live_pack_is_rewritten(tmp_path: Path, cairn_env: Path) -> None:
    # the small live object and the large dead one end up in one pack
    keep = {"keep.bin": os.urandom(50_000)}
    drop = {"drop.bin": os.urandom(500_000)}
    with cairn.init(project="p", save_code=False) as run:
        for name, files in (("keep", keep), ("drop", drop)):
            art = cairn.Artifact(name, type="dataset")
            art.add_dir(_write(tmp_path / name, files))
            run.log_artifact(art)
    cairn.Api().artifact("p/drop:v0").delete()
    report = _gc()
    assert report["packs_deleted"] + report["packs_rewritten"] >= 1
    assert report["bytes_freed"] >= 500_000
    _check("p/keep:v0", keep, tmp_path / "out")


def test_mostly_live_pack_is_kept(
    tmp_path: Path, cairn_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cairn.objects.packs.local as packdb

    monkeypatch.setattr(packdb, "PACK_TARGET", 1 << 40)
    object_store = _odb()
    big = object_store.add(os.urandom(100_000))
    small = object_store.add(b"small garbage")
    object_store.sync()
    rows = {r[0]: r[1] for r in object_store.index.rows()}
    assert rows[big] == rows[small]  # one pack
    report = collect(
        object_store, [], leaves=[big], grace_seconds=0, dry_run=False, settle_seconds=0
    )
    assert report.packs_rewritten == 0 and report.packs_deleted == 0
    assert object_store.has(small)  # more than half live: left as it is


def test_mostly_dead_pack_is_rewritten(
    tmp_path: Path, cairn_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import cairn.objects.packs.local as packdb

    monkeypatch.setattr(packdb, "PACK_TARGET", 1 << 40)
    object_store = _odb()
    live = object_store.add(b"live" * 100)
    dead = object_store.add(os.urandom(100_000))
    object_store.sync()
    (old_pack,) = {r[1] for r in object_store.index.rows()}
    old_size = object_store.pack_path(old_pack).stat().st_size
    dry = collect(object_store, [], leaves=[live], grace_seconds=0, dry_run=True, settle_seconds=0)
    assert dry.packs_rewritten == 1 and object_store.pack_path(old_pack).exists()
    report = collect(
        object_store, [], leaves=[live], grace_seconds=0, dry_run=False, settle_seconds=0
    )
    assert report.packs_rewritten == 1 and report.objects_dropped == 1
    (new_pack,) = {r[1] for r in object_store.index.rows()}
    # the dead object and its record in the pack's footer
    assert report.bytes_freed == old_size - object_store.pack_path(new_pack).stat().st_size
    assert report.bytes_freed == dry.bytes_freed
    assert 100_000 < report.bytes_freed < 100_100
    assert not object_store.pack_path(old_pack).exists()
    assert object_store.get(live) == b"live" * 100 and not object_store.has(dead)
    reset_backends()  # another process sees the same
    assert _odb().get(live) == b"live" * 100


def test_grace_period_protects_recent_packs(tmp_path: Path, cairn_env: Path) -> None:
    files = {"f.bin": os.urandom(300_000)}
    _log("a", _write(tmp_path / "a", files))
    cairn.Api().artifact("p/a:v0").delete()
    before = _store_bytes(cairn_env)
    report = _gc(grace_seconds=3600)
    assert report["bytes_freed"] == 0 and report["objects_dropped"] == 0
    assert _store_bytes(cairn_env) == before
    # the same packs, an hour and more old, go
    old = time.time() - 7200
    for pack in (cairn_env / "store" / "packs").rglob("*.pack"):
        os.utime(pack, (old, old))
    report = _gc(grace_seconds=3600)
    assert report["bytes_freed"] >= 300_000
    assert _store_bytes(cairn_env) < before - 300_000


def test_crashed_writer_temp_pack_removed(tmp_path: Path, cairn_env: Path) -> None:
    object_store = _odb()
    crashed = object_store.root / "tmp" / "0123abcd.pack"
    crashed.write_bytes(b"x" * 1000)
    fresh = object_store.root / "tmp" / "4567abcd.pack"
    fresh.write_bytes(b"y" * 10)
    now = time.time()
    os.utime(crashed, (now - 7200, now - 7200))
    report = _gc(grace_seconds=3600, dry_run=True)
    assert report["tmp_packs_removed"] == 1 and crashed.exists()
    report = _gc(grace_seconds=3600)
    assert report["tmp_packs_removed"] == 1
    assert not crashed.exists() and fresh.exists()
    # a temp pack some process still has open is a running writer's, whatever its age
    fd = os.open(fresh, os.O_RDONLY)
    try:
        os.utime(fresh, (now - 7200, now - 7200))
        assert _gc(grace_seconds=0)["tmp_packs_removed"] == 0
        assert fresh.exists()
    finally:
        os.close(fd)
    assert _gc(grace_seconds=0)["tmp_packs_removed"] == 1


def test_git_diff_objects_of_runs_survive(tmp_path: Path, cairn_env: Path) -> None:
    backend = get_backend()
    object_store = _odb()
    diff = b"diff --git a/x b/x\n+change\n"
    digest = object_store.add(diff)
    garbage = object_store.add(b"nobody refers to me" * 100)
    object_store.sync()
    backend.registry.create_run("p", git_commit="abc", git_dirty=True, git_diff_digest=digest)
    report = _gc()
    assert report["objects_dropped"] == 1
    assert object_store.get(digest) == diff
    assert not object_store.has(garbage)


@pytest.mark.parametrize("at_read", [2, 3, 4])
def test_object_reused_during_gc_is_kept(tmp_path: Path, cairn_env: Path, at_read: int) -> None:
    """A version committed between gc's marking and its unlinking keeps its objects: found
    by the read after marking (2), before dropping rows (3), or after dropping them (4)."""
    backend = get_backend()
    files = {"f.bin": os.urandom(100_000)}
    art = _log("a", _write(tmp_path / "a", files))
    root = art.digest
    cairn.Api().artifact("p/a:v0").delete()
    calls = 0

    def roots() -> tuple[list[str], list[str]]:
        nonlocal calls
        calls += 1
        live, diffs = live_objects(backend.registry)
        if calls == at_read:  # a logger reused the old tree and committed meanwhile
            backend.registry.commit_version(
                "p", "again", "dataset", digest=root, size=100_000, file_count=1
            )
            live = [*live, root]
        return live, diffs

    report = collect(_odb(), roots, grace_seconds=0, dry_run=False, settle_seconds=0)
    assert report.bytes_freed == 0 and report.objects_dropped == 0
    assert report.objects_rescued == (2 if at_read == 4 else 0)
    _check("p/again:v0", files, tmp_path / "out")


LOGGER = textwrap.dedent(
    """
    import json, os, sys, time
    from pathlib import Path
    import cairn
    src, out, seconds = Path(sys.argv[1]), Path(sys.argv[2]), float(sys.argv[3])
    shared = os.urandom(300_000)
    end = time.time() + seconds
    i = 0
    with out.open("w") as log:
        while time.time() < end:
            d = src / str(i)
            d.mkdir(parents=True)
            (d / "shared.bin").write_bytes(shared)
            (d / "own.bin").write_bytes(os.urandom(50_000 + i))
            (d / "big.bin").write_bytes(bytes([i % 256]) * (4 << 20) + os.urandom(100))
            with cairn.init(project="p", save_code=False) as run:
                art = cairn.Artifact("stream", type="dataset")
                art.add_dir(d)
                run.log_artifact(art)
            log.write(json.dumps([art.version, str(d)]) + "\\n")
            log.flush()
            i += 1
    """
)


@pytest.mark.slow
def test_gc_while_another_process_logs(tmp_path: Path, cairn_env: Path) -> None:
    out = tmp_path / "logged.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-c", LOGGER, str(tmp_path / "src"), str(out), "6"],
        env={**os.environ, "CAIRN_DIR": str(cairn_env), "CAIRN_QUIET": "1"},
    )
    runs = freed = 0
    deleted: set[str] = set()
    try:
        while proc.poll() is None:
            # delete every other version logged so far, so gc has real work to do
            for line in out.read_text().splitlines() if out.exists() else []:
                version, _ = json.loads(line)
                if int(version[1:]) % 2 == 0 and version not in deleted:
                    cairn.Api().artifact(f"p/stream:{version}").delete()
                    deleted.add(version)
            report = _gc(settle_seconds=0.2)
            freed += report["bytes_freed"]
            runs += 1
    finally:
        proc.wait(timeout=120)
    assert proc.returncode == 0
    assert runs >= 2
    print(f"gc ran {runs} times while logging, freed {freed} bytes")
    final = _gc(settle_seconds=0.2)
    assert final["packs_total"] >= 1
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(lines) >= 3
    print(f"{len(lines)} versions logged, {len(deleted)} deleted, final gc: {final}")
    assert freed + final["bytes_freed"] > 0
    for version, src in lines:
        if version in deleted:
            continue
        expected = {p.name: p.read_bytes() for p in Path(src).iterdir()}
        _check(f"p/stream:{version}", expected, tmp_path / "out" / version)


def test_one_gc_at_a_time(cairn_env: Path) -> None:
    import fcntl

    from cairn.errors import StoreError

    object_store = _odb()
    fd = os.open(object_store.root / "gc.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        with pytest.raises(StoreError, match="another gc is running"):
            collect(object_store, [], grace_seconds=0, dry_run=False)
    finally:
        os.close(fd)
    assert collect(object_store, [], grace_seconds=0, dry_run=True).packs_total == 0


def test_damaged_store_stops_gc_before_deleting(tmp_path: Path, cairn_env: Path) -> None:
    from cairn.errors import StoreError

    big = {"big.bin": os.urandom(5 << 20)}
    _log("a", _write(tmp_path / "a", big))
    _log("b", _write(tmp_path / "b", {"b.bin": os.urandom(1000)}))
    cairn.Api().artifact("p/b:v0").delete()
    object_store = _odb()
    chunk_list = next(
        r[0]
        for r in object_store.index.rows()
        if object_store.get(r[0]).startswith(b'{"cairn":"chunks"')
    )
    object_store.delete(chunk_list)
    before = _store_bytes(cairn_env)
    with pytest.raises(StoreError, match="missing from the store"):
        _gc()
    assert _store_bytes(cairn_env) == before


def test_relogging_content_of_a_collected_version_restores_what_gc_dropped(
    tmp_path: Path, cairn_env: Path
) -> None:
    """gc drops the dead objects of the packs it rewrites or deletes, but a mostly-live pack is
    kept whole, dead tree objects included. Logging the same content again finds those trees
    (and the root) still indexed: every file below them must still be checked and re-stored,
    or the new version would point at a blob gc dropped."""
    lone = os.urandom(10_000)
    big = os.urandom(3 << 20)  # stored whole, keeps the second pack mostly live
    old = time.time() - 60  # older than the hash cache's racy window: cached when logged
    src_z = _write(tmp_path / "z", {"b.txt": lone})
    src_a = _write(tmp_path / "a", {"s/b.txt": lone, "s/c.txt": b"c" * 100, "big.bin": big})
    for f in [*src_z.rglob("*.*"), *src_a.rglob("*.*")]:
        os.utime(f, (old, old))
    z = _log("z", src_z)  # pack 1: the blob of b.txt
    a = _log("a", src_a)  # pack 2: big.bin, c.txt, the trees; b.txt is already stored
    _log("w", _write(tmp_path / "w", {"big.bin": big}))  # keeps big.bin live
    first_root = a.digest
    z.delete()
    a.delete()
    report = _gc()
    assert report["packs_deleted"] >= 1  # the pack holding only b.txt's blob

    again = _log("a", src_a)  # every file answered by the hash cache
    assert again.digest == first_root
    _check("p/a:latest", {"s/b.txt": lone, "s/c.txt": b"c" * 100, "big.bin": big}, tmp_path / "out")


def test_the_store_counts_drops_so_loggers_know_when_to_look_again(
    tmp_path: Path, cairn_env: Path
) -> None:
    src = _write(tmp_path / "d", {"a.txt": b"a" * 100, "b.txt": b"b" * 100})
    a = _log("d", src)
    object_store = _odb()
    assert object_store.generation() == 0  # nothing ever dropped: a logger trusts what it finds
    a.delete()
    assert object_store.generation() == 0  # deleting a version drops no object by itself
    report = _gc()
    assert report["packs_deleted"] == 1
    assert object_store.generation() == 1
    again = _log("d", src)  # a full check this time: everything is stored again
    assert again.version == "v1"
    _check("p/d:latest", {"a.txt": b"a" * 100, "b.txt": b"b" * 100}, tmp_path / "out")
