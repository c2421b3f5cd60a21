"""A client's capped download cache (CAIRN_CACHE_MAX) against a real server: downloads larger
than the cap leave the cache under it with every file right, evicted data is fetched again,
downloaded files never depend on the cache, readers survive packs evicted under them, two
processes downloading at once under a small cap both get the right bytes, and the embedded
store is never touched."""

from __future__ import annotations

import hashlib
import json
import os
import random
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import cairn
from cairn.client import cache_limit
from cairn.client.cache_limit import CachePackStore, cache_bytes, pack_files, read_log
from cairn.client.http import Http
from cairn.client.objects import HttpObjectStore
from cairn.core.digest import hash_bytes
from cairn.sdk.backend import get_backend, reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import s3_service

__all__ = ["s3_service"]

MB = 1_000_000


def _make_data(folder: Path, seed: int, *, small: int = 24, big: int = 6 << 20) -> Path:
    """Random files (so nothing deduplicates): ``small`` files of 300-500 kB and one file
    above the 4 MiB chunking threshold."""
    rnd = random.Random(seed)
    folder.mkdir(parents=True)
    for i in range(small):
        (folder / "part" / f"f{i:03d}.bin").parent.mkdir(exist_ok=True)
        (folder / "part" / f"f{i:03d}.bin").write_bytes(rnd.randbytes(rnd.randint(300, 500) * 1000))
    if big:
        (folder / "big.bin").write_bytes(rnd.randbytes(big))
    return folder


def _log(name: str, data: Path) -> None:
    with cairn.init(project="p", job_type="t") as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(data)
        run.log_artifact(art)


def _download(spec: str, dest: Path) -> Path:
    return Path(cairn.Api("p").artifact(spec).download(root=dest))


def _same_tree(expected: Path, got: Path) -> None:
    want = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    have = sorted(p.relative_to(got) for p in got.rglob("*") if p.is_file())
    assert have == want
    for rel in want:
        assert (got / rel).read_bytes() == (expected / rel).read_bytes(), rel


def _cache_root(home: Path) -> Path:
    return home / "cache" / "objects"


@pytest.fixture
def client(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch, cairn_env: Path
) -> Callable[[str], Path]:
    """``client(cap)``: the SDK talks to the server with CAIRN_CACHE_MAX=cap; returns the
    download cache's folder."""

    def point(cap: str) -> Path:
        monkeypatch.setenv("CAIRN_URL", server.url)
        monkeypatch.setenv("CAIRN_CACHE_MAX", cap)
        reset_backends()
        return _cache_root(cairn_env)

    return point


def test_a_download_larger_than_the_cap_leaves_the_cache_under_it(
    client: Callable[[str], Path], tmp_path: Path
) -> None:
    data = _make_data(tmp_path / "data", 1)  # about 16 MB
    total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    root = client("3MB")
    _log("ds", data)
    reset_backends()

    peak = 0
    done = threading.Event()

    def watch() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, cache_bytes(root))
            time.sleep(0.002)

    watcher = threading.Thread(target=watch)
    watcher.start()
    try:
        out = _download("ds:v0", tmp_path / "out")
    finally:
        done.set()
        watcher.join()
    _same_tree(data, out)
    assert cache_bytes(root) <= 3 * MB
    # the cache never held the whole download: a window ahead of the files being placed
    assert peak <= 3 * MB + (4 << 20) < total
    log = read_log(root)
    assert log and sum(e["bytes"] for e in log) >= total - 3 * MB - (4 << 20)
    assert all(e["reason"] == "download" for e in log)


def test_evicted_data_is_fetched_again(client: Callable[[str], Path], tmp_path: Path) -> None:
    data = _make_data(tmp_path / "data", 2)
    root = client("3MB")
    _log("ds", data)
    reset_backends()
    _same_tree(data, _download("ds:v0", tmp_path / "one"))
    reset_backends()
    assert cache_bytes(root) <= 3 * MB  # most of it went: the second download fetches again
    _same_tree(data, _download("ds:v0", tmp_path / "two"))
    assert cache_bytes(root) <= 3 * MB


def test_downloaded_files_are_copies_the_cache_can_lose(
    client: Callable[[str], Path], tmp_path: Path
) -> None:
    data = _make_data(tmp_path / "data", 3, small=6, big=0)
    root = client("none")
    _log("ds", data)
    reset_backends()
    out = _download("ds:v0", tmp_path / "out")
    reset_backends()
    packs = pack_files(root)
    assert packs and cache_bytes(root) >= sum(p.stat().st_size for p in data.rglob("*.bin"))
    pack_inodes = {os.stat(root / "packs" / name[:2] / name).st_ino for name in packs}
    for f in out.rglob("*.bin"):
        st = f.stat()
        assert st.st_nlink == 1 and st.st_ino not in pack_inodes  # a file of its own

    # writing to a downloaded file changes nothing in the cache
    victim = next(out.rglob("*.bin"))
    victim.write_bytes(b"changed by the user")
    _same_tree(data, _download("ds:v0", tmp_path / "again"))
    reset_backends()

    # emptying the cache leaves the user's folder alone
    store = CachePackStore(root)
    try:
        cache_limit.evict(store, 0, limit=0, reason="clean")
    finally:
        store.close()
    assert cache_bytes(root) == 0
    _same_tree(data, tmp_path / "again")
    assert victim.read_bytes() == b"changed by the user"


def test_a_reader_survives_packs_evicted_under_it(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cairn_env: Path
) -> None:
    """Two stores on one cache, as two processes: the one reading either finishes from the
    pack it has open or fetches the object again; it never gets wrong bytes."""
    monkeypatch.setenv("CAIRN_URL", server.url)
    monkeypatch.setenv("CAIRN_CACHE_MAX", "none")
    rnd = random.Random(4)
    blobs = [rnd.randbytes(200_000) for _ in range(6)]
    http = Http(server.url, None)
    writer = HttpObjectStore(http, tmp_path / "unused")
    digests = [writer.add(b) for b in blobs]
    writer.sync()
    writer.close()

    root = tmp_path / "shared-cache"
    reader = HttpObjectStore(http, root)
    evictor = CachePackStore(root)
    try:
        reader.warm(digests)  # fetched and located (pack, offset, length)
        assert reader.get(digests[0]) == blobs[0]  # its pack is now open in the reader
        assert cache_limit.evict(evictor, 0, limit=0) is not None
        assert cache_bytes(root) == 0
        for digest, blob in zip(digests, blobs, strict=True):
            assert reader.get(digest) == blob
            out = tmp_path / "out.bin"
            with open(out, "wb+") as fh:
                n = reader.read_into(digest, fh.fileno(), 0)
            assert n == len(blob) and out.read_bytes() == blob
    finally:
        evictor.close()
        reader.close()
        http.close()


_WORKER = """
import hashlib, json, os, sys
from pathlib import Path
import cairn
from cairn.sdk.backend import reset_backends

expected = json.loads(Path(sys.argv[1]).read_text())
out = Path(sys.argv[2])
for round in range(3):
    for spec, files in expected.items():
        dest = out / f"{round}-{spec.replace(':', '-')}"
        got = Path(cairn.Api("p").artifact(spec).download(root=dest))
        for rel, digest in files.items():
            actual = hashlib.sha256((got / rel).read_bytes()).hexdigest()
            if actual != digest:
                sys.exit(f"{spec} {rel}: wrong bytes")
        reset_backends()
print("ok")
"""


def _manifest(data: Path) -> dict[str, str]:
    return {
        p.relative_to(data).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in data.rglob("*")
        if p.is_file()
    }


def test_two_processes_downloading_at_once_under_a_small_cap(
    client: Callable[[str], Path], tmp_path: Path, cairn_env: Path
) -> None:
    one = _make_data(tmp_path / "one", 5, small=16, big=5 << 20)
    two = _make_data(tmp_path / "two", 6, small=16, big=5 << 20)
    root = client("2MB")
    _log("a", one)
    _log("b", two)
    reset_backends()
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"a:v0": _manifest(one), "b:v0": _manifest(two)}))
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    env = {**os.environ}
    workers = [
        subprocess.Popen(
            [sys.executable, str(script), str(expected), str(tmp_path / f"out{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    for w in workers:
        stdout, stderr = w.communicate(timeout=300)
        assert w.returncode == 0, stderr
        assert stdout.strip() == "ok"
    assert cache_bytes(root) <= 2 * MB
    assert {e["pid"] for e in read_log(root)} == {w.pid for w in workers}
    assert not list((root / "pins").glob("*.pins"))  # each process took its pins away


def test_the_embedded_store_is_never_evicted(
    server: ServerThread, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cairn_env: Path
) -> None:
    data = _make_data(tmp_path / "data", 7, small=10, big=0)
    monkeypatch.setenv("CAIRN_CACHE_MAX", "1MB")
    _log("local", data)  # the embedded store of this CAIRN_DIR
    store = cairn_env / "store"

    def snapshot() -> tuple[dict[str, bytes], list[tuple[str, ...]]]:
        packs = {str(p): p.read_bytes() for p in store.rglob("*.pack")}
        db = sqlite3.connect(store / "index.db")
        try:
            rows = sorted(db.execute("SELECT * FROM objects").fetchall())
        finally:
            db.close()
        return packs, rows

    _same_tree(data, _download("local:v0", tmp_path / "embedded-out"))
    reset_backends()
    before = snapshot()
    assert before[0] and before[1]

    monkeypatch.setenv("CAIRN_URL", server.url)
    reset_backends()
    _log("ds", data)
    reset_backends()
    _same_tree(data, _download("ds:v0", tmp_path / "out"))
    assert read_log(_cache_root(cairn_env))  # the download cache did evict
    assert cache_bytes(_cache_root(cairn_env)) <= MB
    assert snapshot() == before


def test_the_least_recently_used_data_goes_first(
    client: Callable[[str], Path], tmp_path: Path
) -> None:
    root = client("3MB")
    sets = {
        name: _make_data(tmp_path / name, seed, small=3, big=0)
        for name, seed in [("a", 10), ("b", 11), ("c", 12)]
    }
    for name, data in sets.items():
        _log(name, data)
    reset_backends()

    def cached(name: str) -> int:
        """How many of the set's files the cache holds."""
        digests = [hash_bytes(p.read_bytes()) for p in sets[name].rglob("*.bin")]
        store = CachePackStore(root)
        try:
            return len(digests) - len(store.missing(digests))
        finally:
            store.close()

    _download("a:v0", tmp_path / "a1")
    reset_backends()
    _download("b:v0", tmp_path / "b1")
    reset_backends()
    assert cached("a") == cached("b") == 3  # 2.4 MB: both fit
    _download("a:v0", tmp_path / "a2")  # read from the cache: a is now the recent one
    reset_backends()
    assert not read_log(root)
    _download("c:v0", tmp_path / "c1")
    reset_backends()
    assert cached("a") == 3 and cached("c") == 3
    assert cached("b") == 0
    assert cache_bytes(root) <= 3 * MB


def test_direct_transfers_from_a_bucket_stay_under_the_cap(
    request: pytest.FixtureRequest,
    postgres_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cairn_env: Path,
) -> None:
    """With a bucket store, objects come straight from the bucket on signed URLs (ranged
    GETs): the window and the cap work the same."""
    service: Any = request.getfixturevalue("s3_service")
    settings = ServerSettings(
        database_url=postgres_url,
        store=tmp_path / "server-store",
        store_url=f"s3://{service.bucket()}/cairn",
        cache_dir=tmp_path / "server-cache",
    )
    data = _make_data(tmp_path / "data", 13, small=16, big=5 << 20)
    with ServerThread(settings) as server:
        monkeypatch.setenv("CAIRN_URL", server.url)
        monkeypatch.setenv("CAIRN_CACHE_MAX", "3MB")
        reset_backends()
        _log("ds", data)
        reset_backends()
        object_store = get_backend().object_store
        assert isinstance(object_store, HttpObjectStore) and object_store.direct
        _same_tree(data, _download("ds:v0", tmp_path / "out"))
        assert object_store.bucket_requests > 0
        reset_backends()
    root = _cache_root(cairn_env)
    assert cache_bytes(root) <= 3 * MB
    assert read_log(root)


def test_a_download_killed_midway_leaves_nothing_that_stays(
    client: Callable[[str], Path], tmp_path: Path
) -> None:
    """``kill -9`` during a download: its pins die with it (the next eviction removes them and
    may evict what they held), its half-written pack goes once a day old, and the next
    download is right and leaves the cache under the cap."""
    data = _make_data(tmp_path / "data", 14, small=40, big=8 << 20)
    root = client("3MB")
    _log("ds", data)
    reset_backends()
    script = tmp_path / "download.py"
    script.write_text(
        "import sys, cairn\ncairn.Api('p').artifact('ds:v0').download(root=sys.argv[1])\n"
    )
    victim = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "killed")], env={**os.environ}
    )
    try:
        deadline = time.monotonic() + 120
        while not list((root / "pins").glob("*.pins")):
            assert victim.poll() is None, "the download ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.005)
        time.sleep(0.05)
    finally:
        victim.kill()
        victim.wait()
    assert victim.returncode == -9
    assert list((root / "pins").glob("*.pins"))  # the dead process's pins are still there
    for leftover in (root / "tmp").glob("*.pack"):  # a day later
        os.utime(leftover, (time.time() - 2 * 86400,) * 2)

    _same_tree(data, _download("ds:v0", tmp_path / "out"))
    reset_backends()
    assert not list((root / "pins").glob("*.pins"))
    assert not list((root / "tmp").glob("*.pack"))
    assert cache_bytes(root) <= 3 * MB


def test_a_download_survives_the_cache_being_emptied_under_it(
    client: Callable[[str], Path], tmp_path: Path
) -> None:
    """Another process evicting everything it may, again and again, while a download runs
    (as `cairn cache clean --max-size 0` in a loop): the download still writes every file
    right; what it needs is pinned, and what went anyway is fetched again."""
    data = _make_data(tmp_path / "data", 15, small=30, big=6 << 20)
    root = client("4MB")
    _log("ds", data)
    reset_backends()
    expected = tmp_path / "expected.json"
    expected.write_text(json.dumps({"ds:v0": _manifest(data)}))
    script = tmp_path / "worker.py"
    script.write_text(_WORKER)
    worker = subprocess.Popen(
        [sys.executable, str(script), str(expected), str(tmp_path / "out")],
        env={**os.environ},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cleans = 0
    store = CachePackStore(root)
    try:
        while worker.poll() is None:
            if cache_limit.evict(store, 0, limit=0, reason="clean") is not None:
                cleans += 1
            time.sleep(0.01)
    finally:
        store.close()
    stdout, stderr = worker.communicate()
    assert worker.returncode == 0, stderr
    assert stdout.strip() == "ok"
    assert cleans > 0
