"""Logging to and downloading from S3, with and without pack batching.

Starts moto's S3 server as a separate process on 127.0.0.1 (so the client and the server do not
share an interpreter), generates 2,000 files of 4-64 KiB plus one 64 MiB file, then for each
object layout logs them (hash, store the missing objects, write the trees, sync) and downloads
them into an empty folder (every file verified):

- ``loose``:  `KeyedObjectStore` over `CloudStorage`, one S3 key per object (a PUT and a HEAD each);
- ``packed``: `BucketPackStore`, objects appended to 32 MiB packs, one PUT per pack plus
  one per pack index, reads in 4 MiB blocks.
- ``direct`` / ``proxied`` (``--layouts direct,proxied``): through a ``cairn server --store
  s3://…`` process (SQLite, open mode), the client's `HttpObjectStore` moving the bytes
  straight to and from the bucket on signed URLs, or through the server (``--no-direct``).

Requests are counted by a thin wrapper around the storage (for the server layouts: the
client's requests to the server and to the bucket). Usage::

    .venv/bin/python bench/s3.py [--files 2000] [--big-mib 64] [--repeat 3]
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

from cairn.objects import tree
from cairn.objects.ingest import Ingestor, StagedFile
from cairn.objects.keyed import KeyedObjectStore
from cairn.objects.materialize import Materializer, Wanted
from cairn.objects.packs.bucket import BucketPackStore
from cairn.storage import open_storage


class Counting:
    """A Storage that counts the requests it passes on (HEADs per key for ``missing``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.url = inner.url
        self.counts: Counter[str] = Counter()

    def exists(self, key: str) -> bool:
        self.counts["HEAD"] += 1
        return bool(self.inner.exists(key))

    def missing(self, keys: Iterable[str]) -> set[str]:
        keys = list(keys)
        self.counts["HEAD"] += len(keys)
        return set(self.inner.missing(keys))

    def put(self, key: str, data: bytes | memoryview) -> bool:
        self.counts["PUT"] += 1
        return bool(self.inner.put(key, data))

    def put_range(self, key: str, fd: int, offset: int, length: int) -> bool:
        self.counts["PUT"] += 1
        return bool(self.inner.put_range(key, fd, offset, length))

    def get(self, key: str) -> bytes:
        self.counts["GET"] += 1
        return bytes(self.inner.get(key))

    def get_range(self, key: str, offset: int, length: int) -> bytes:
        self.counts["GET"] += 1
        return bytes(self.inner.get_range(key, offset, length))

    def open(self, key: str) -> BinaryIO:
        self.counts["GET"] += 1
        return self.inner.open(key)  # type: ignore[no-any-return]

    def size(self, key: str) -> int:
        self.counts["HEAD"] += 1
        return int(self.inner.size(key))

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def list(self, prefix: str = "") -> Iterator[str]:
        self.counts["LIST"] += 1
        return iter(self.inner.list(prefix))

    def sync(self) -> None:
        self.inner.sync()

    def local_path(self, key: str) -> Path | None:
        return None


def start_moto() -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(endpoint + "/moto-api/", timeout=1).close()
            return proc, endpoint
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("moto server did not start")


def make_bucket(endpoint: str, name: str) -> None:
    import boto3

    boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        region_name="us-east-1",
    ).create_bucket(Bucket=name)


def make_data(root: Path, files: int, big_mib: int) -> list[StagedFile]:
    rnd = random.Random(1234)
    staged = []
    for i in range(files):
        rel = f"d{i % 50:02d}/f{i:05d}.bin"
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rnd.randbytes(rnd.randint(4 << 10, 64 << 10)))
        staged.append(StagedFile(rel, path))
    if big_mib:
        path = root / "big.bin"
        with open(path, "wb") as f:
            for _ in range(big_mib):
                f.write(rnd.randbytes(1 << 20))
        staged.append(StagedFile("big.bin", path))
    return staged


class Server:
    """``cairn server`` on a bucket, in a process of its own (SQLite, no users)."""

    def __init__(self, url: str, work: Path, direct: bool) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        home = work / f"server-{port}"
        args = ["--store", url, "--port", str(port), "--log-level", "warning"]
        args += ["--database-url", f"sqlite:///{home / 'cairn.db'}"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from cairn.cli.main import main; main()", "server", *args]
            + ([] if direct else ["--no-direct"]),
            env={**os.environ, "CAIRN_DIR": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(600):
            try:
                urllib.request.urlopen(self.url + "/api/v1/health", timeout=1).close()
                return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise SystemExit("cairn server did not start")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def _counts(object_store: Any, direction: str) -> dict[str, int]:
    counts = {"bucket": object_store.bucket_requests}
    counts["object"] = (
        object_store.upload_requests if direction == "up" else object_store.download_requests
    )
    return counts


def run_server(layout: str, url: str, staged: list[StagedFile], work: Path) -> dict[str, Any]:
    from cairn.client.http import Http
    from cairn.client.objects import HttpObjectStore

    server = Server(url, work, direct=layout == "direct")
    try:
        http = Http(server.url, None)
        object_store = HttpObjectStore(http, work / f"cache-{layout}")
        start = time.perf_counter()
        ingestor = Ingestor(object_store, None)
        entries = ingestor.hash_files(staged)
        ingestor.store_tree(tree.build(entries))
        object_store.sync()
        log_s = time.perf_counter() - start
        log_requests = _counts(object_store, "up")
        object_store.close()
        # download as another machine would: an empty cache
        object_store = HttpObjectStore(http, work / f"cache-{layout}-reader")
        dest = work / f"out-{layout}"
        start = time.perf_counter()
        wanted = [Wanted(e.path, e.digest, e.size, e.chunks) for e in entries]
        Materializer(object_store, None).materialize(wanted, dest)
        download_s = time.perf_counter() - start
        download_requests = _counts(object_store, "down")
        object_store.close()
        http.close()
    finally:
        server.stop()
    keys = sum(1 for _ in open_storage(url).list())
    shutil.rmtree(dest)
    for cache in work.glob("cache-*"):
        shutil.rmtree(cache)
    return {
        "layout": layout,
        "log_s": log_s,
        "download_s": download_s,
        "log_requests": log_requests,
        "download_requests": download_requests,
        "keys": keys,
    }


def run(layout: str, url: str, staged: list[StagedFile], work: Path) -> dict[str, Any]:
    if layout in ("direct", "proxied"):
        return run_server(layout, url, staged, work)
    storage = Counting(open_storage(url))
    object_store: Any
    if layout == "packed":
        object_store = BucketPackStore(storage, work / f"cache-{layout}")  # type: ignore[arg-type]
    else:
        object_store = KeyedObjectStore(storage)  # type: ignore[arg-type]
    start = time.perf_counter()
    ingestor = Ingestor(object_store, None)
    entries = ingestor.hash_files(staged)
    built = tree.build(entries)
    ingestor.store_tree(built)
    object_store.sync()
    log_s = time.perf_counter() - start
    log_requests = dict(storage.counts)

    # download as another machine would: a new store object, an empty index cache
    storage = Counting(open_storage(url))
    if layout == "packed":
        object_store = BucketPackStore(storage, work / f"cache-{layout}-reader")  # type: ignore[arg-type]
    else:
        object_store = KeyedObjectStore(storage)  # type: ignore[arg-type]
    dest = work / f"out-{layout}"
    start = time.perf_counter()
    wanted = [Wanted(e.path, e.digest, e.size, e.chunks) for e in entries]
    Materializer(object_store, None).materialize(wanted, dest)
    download_s = time.perf_counter() - start
    keys = sum(1 for _ in open_storage(url).list())
    shutil.rmtree(dest)
    for cache in work.glob("cache-*"):
        shutil.rmtree(cache)
    return {
        "layout": layout,
        "log_s": log_s,
        "download_s": download_s,
        "log_requests": log_requests,
        "download_requests": dict(storage.counts),
        "keys": keys,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=2000)
    parser.add_argument("--big-mib", type=int, default=64)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--layouts", default="loose,packed", help="comma-separated: loose, packed, direct, proxied"
    )
    args = parser.parse_args()
    layouts = args.layouts.split(",")

    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
    )
    proc, endpoint = start_moto()
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-s3-"))
    try:
        staged = make_data(work / "data", args.files, args.big_mib)
        total = sum(os.path.getsize(s.source) for s in staged)
        print(f"data: {len(staged)} files, {total / 2**20:.1f} MiB; moto at {endpoint}")
        results: dict[str, list[dict[str, Any]]] = {layout: [] for layout in layouts}
        for i in range(args.repeat):
            for layout in layouts:
                bucket = f"bench{layout}{i}"
                make_bucket(endpoint, bucket)
                r = run(layout, f"s3://{bucket}/store", staged, work)
                results[layout].append(r)
                print(
                    f"  run {i + 1} {layout:6s}: log {r['log_s']:6.2f} s "
                    f"{r['log_requests']}, download {r['download_s']:6.2f} s "
                    f"{r['download_requests']}, {r['keys']} keys in the bucket"
                )
        print()
        print("| layout | log (s) | log requests | download (s) | download requests | keys |")
        print("|---|---|---|---|---|---|")
        for layout, runs in results.items():
            log = sorted(r["log_s"] for r in runs)
            dl = sorted(r["download_s"] for r in runs)
            last = runs[-1]

            def fmt(counts: dict[str, int]) -> str:
                return ", ".join(f"{n:,} {k}" for k, n in sorted(counts.items()))

            print(
                f"| {layout} | {log[len(log) // 2]:.2f} ({log[0]:.2f}-{log[-1]:.2f}) "
                f"| {fmt(last['log_requests'])} "
                f"| {dl[len(dl) // 2]:.2f} ({dl[0]:.2f}-{dl[-1]:.2f}) "
                f"| {fmt(last['download_requests'])} | {last['keys']:,} |"
            )
    finally:
        proc.kill()
        proc.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
