"""One version from many workers (issue 13): a folder of many small files logged by one process
vs by two workers on Dask, on Ray, or in worker processes of this machine (`processes`),
embedded and through a server on an S3 bucket.

Data: ``python3 ../shared/bench/gen_many.py DATA --files N`` (made here when DATA does not
exist). Each run starts from a fresh ``CAIRN_DIR`` (no hash cache: every file is read and
hashed), and for the server mode a fresh ``cairn server`` process (SQLite, open) on a fresh
bucket of a moto S3 server (its own process); the workers upload on signed URLs. The
clusters are started before the timings (their start is reported apart). Reference, in the
same run: a stat walk of DATA (Python ``os.scandir`` + ``stat``), and ``cat`` of every file.

    .venv/bin/python bench/distributed.py /work/benchdata/many100k --files 100000 \
        [--modes embedded,server-bucket] [--engines single,dask,ray,processes] [--workers 2]

Prints one line per run and a Markdown table; every run of one mode must give one digest.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

# this file is named like Dask's `distributed` package: take its folder off the import path
_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

# ../shared/bench/gen_many.py beside the repository (a worktree sits one level deeper)
GEN_MANY = next(
    (
        p / "shared" / "bench" / "gen_many.py"
        for p in Path(__file__).resolve().parents
        if (p / "shared" / "bench" / "gen_many.py").exists()
    ),
    Path("../shared/bench/gen_many.py"),
)


def stat_walk(root: Path) -> tuple[float, int]:
    started = time.perf_counter()
    n = 0
    stack = [str(root)]
    while stack:
        with os.scandir(stack.pop()) as it:
            for entry in it:
                if entry.is_dir(follow_symlinks=False):
                    stack.append(entry.path)
                else:
                    entry.stat()
                    n += 1
    return time.perf_counter() - started, n


def cat_all(root: Path) -> float:
    started = time.perf_counter()
    subprocess.run(
        f"find {root} -type f -print0 | xargs -0 cat > /dev/null", shell=True, check=True
    )
    return time.perf_counter() - started


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait(url: str, proc: subprocess.Popen[bytes], what: str) -> None:
    for _ in range(1200):
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None:
                break
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"{what} did not start")


class Moto:
    def __init__(self) -> None:
        port = _port()
        self.endpoint = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.endpoint + "/moto-api/", self.proc, "moto")

    def bucket(self, name: str) -> str:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(
            Bucket=name
        )
        return f"s3://{name}/cairn"

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class Server:
    """``cairn server`` on a bucket, in a process of its own (SQLite, no users: open)."""

    def __init__(self, store: str, home: Path) -> None:
        port = _port()
        self.url = f"http://127.0.0.1:{port}"
        home.mkdir(parents=True)
        args = ["server", "--store", store, "--port", str(port), "--log-level", "warning"]
        args += ["--database-url", f"sqlite:///{home / 'cairn.db'}"]
        self.proc = subprocess.Popen(
            [sys.executable, "-c", "from cairn.cli.main import main; main()", *args],
            env={**os.environ, "CAIRN_DIR": str(home)},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _wait(self.url + "/api/v1/health", self.proc, "cairn server")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()


class PeakMemory:
    """Peak RSS of this process (the driver) and of the largest other process below it (a
    worker; ``skip``: pids of the server and the emulator), sampled every 0.2 s while open."""

    def __init__(self, skip: set[int]) -> None:
        import threading

        self.skip = skip
        self.driver = self.worker = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psutil

        me = psutil.Process()
        while not self._stop.wait(0.2):
            self.driver = max(self.driver, me.memory_info().rss)
            for child in me.children(recursive=True):
                if child.pid in self.skip:
                    continue
                try:
                    self.worker = max(self.worker, child.memory_info().rss)
                except psutil.Error:
                    pass  # ended meanwhile

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def log_once(
    data: Path,
    engine: str,
    options: dict[str, Any],
    download: Path | None = None,
    skip: set[int] | None = None,
) -> tuple[float, str, int, float, list[float], PeakMemory]:
    """(seconds, digest, files, seconds of the finish: merging the parts and committing, the
    seconds of a download into ``download`` when asked, and the log's peak memory)."""
    import cairn
    import cairn.distributed
    from cairn.sdk.backend import reset_backends
    from cairn.sdk.run import Run

    finish = Run.finish_artifact
    spent = [0.0]

    def timed(self: Run, *args: Any, **kwargs: Any) -> Any:
        began = time.perf_counter()
        try:
            return finish(self, *args, **kwargs)
        finally:
            spent[0] += time.perf_counter() - began

    Run.finish_artifact = timed  # type: ignore[method-assign]
    reset_backends()
    started = time.perf_counter()
    with PeakMemory(skip or set()) as peak, cairn.init(project="bench", job_type=engine) as run:
        if engine == "single":
            art = run.log_artifact(data, name="many")
        else:
            art = cairn.distributed.log_dir(data, "many", **options)
    seconds = time.perf_counter() - started
    Run.finish_artifact = finish  # type: ignore[method-assign]
    if download is not None:
        began = time.perf_counter()
        if engine == "single":
            art.download(download)
        else:
            cairn.distributed.download(art, download, **options)
        spent.append(time.perf_counter() - began)
    reset_backends()
    return seconds, art.digest, art.file_count, spent[0], spent[1:], peak


def merge_bench(files: int, parts: int, flat: bool) -> dict[str, Any]:
    """The finish's merge alone, on synthetic entries (no file is read): ``files`` files in
    folders of 1,000 (or one flat folder) cut into ``parts`` contiguous parts, each built as
    its own tree; then the parts' trees merged. Compared with building the whole tree at once
    (what one process does)."""
    import tracemalloc

    from cairn.core.digest import hash_bytes
    from cairn.objects import tree, treemerge

    entries = []
    for i in range(files):
        path = f"item-{i:08d}.bin" if flat else f"shard-{i // 1000:05d}/item-{i:08d}.bin"
        entries.append(tree.FileEntry(path, hash_bytes(str(i).encode()), 100 + i % 900))
    started = time.perf_counter()
    whole = tree.build(entries)
    build_s = time.perf_counter() - started
    store: dict[str, bytes] = {}
    roots = []
    size, rest = divmod(files, parts)
    start = 0
    for p in range(parts):
        end = start + size + (1 if p < rest else 0)
        built = tree.build(entries[start:end])
        store.update(built.objects)
        roots.append((str(p), built.root))
        start = end
    del entries
    started = time.perf_counter()
    merged = treemerge.merge(roots, store.__getitem__)
    merge_s = time.perf_counter() - started
    merged.close()
    tracemalloc.start()  # a second merge for its memory (tracing slows it several-fold)
    treemerge.merge(roots, store.__getitem__).close()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert merged.root == whole.root
    layout = "one flat folder" if flat else "folders of 1,000"
    return {
        "step": f"merge {parts} parts of {files:,} files ({layout})",
        "seconds": round(merge_s, 2),
        "build_whole_tree": round(build_s, 2),
        "trees_written": len(merged.digests),
        "peak_mib": round(peak / 2**20),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--modes", default="embedded,server-bucket")
    ap.add_argument("--engines", default="single,dask,ray")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--download", action="store_true", help="also download each version")
    ap.add_argument(
        "--merge-only",
        action="store_true",
        help="only time the finish's merge on synthetic entries (--files, 8 and 400 parts)",
    )
    args = ap.parse_args()
    if args.merge_only:
        for parts in (8, 400):
            for flat in (False, True):
                print(json.dumps(merge_bench(args.files, parts, flat)), flush=True)
        return
    if not args.data.exists():
        subprocess.run(
            [sys.executable, str(GEN_MANY), str(args.data), "--files", str(args.files)], check=True
        )
    os.environ["CAIRN_QUIET"] = "1"
    os.environ.update(
        AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench", AWS_REGION="us-east-1"
    )
    for name in ("CAIRN_URL", "CAIRN_API_KEY", "CAIRN_STORE", "CAIRN_DATABASE_URL"):
        os.environ.pop(name, None)
    work = Path(tempfile.mkdtemp(prefix="cairn-bench-dist-"))
    rows: list[dict[str, Any]] = []

    def row(**fields: Any) -> None:
        rows.append(fields)
        print(json.dumps(fields), flush=True)

    walk_s, n = stat_walk(args.data)
    row(step="stat walk (reference)", seconds=round(walk_s, 2), files=n)
    row(step="cat every file (reference)", seconds=round(cat_all(args.data), 2), files=n)

    engines = args.engines.split(",")
    clusters: dict[str, dict[str, Any]] = {}
    if "dask" in engines:
        from distributed import Client, LocalCluster

        started = time.perf_counter()
        cluster = LocalCluster(
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        )
        client = Client(cluster)
        row(
            step=f"dask LocalCluster start ({args.workers} workers)",
            seconds=round(time.perf_counter() - started, 2),
        )
        clusters["dask"] = {"client": client}
    if "ray" in engines:
        import ray

        started = time.perf_counter()
        ray.init(num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
        row(
            step=f"ray start ({args.workers} CPUs)", seconds=round(time.perf_counter() - started, 2)
        )
        clusters["ray"] = {"engine": "ray"}

    if "processes" in engines:  # started by each map: the start is in the log's time
        from cairn.distributed import processes_engine

        clusters["processes"] = {"engine": processes_engine(args.workers)}

    moto = Moto() if "server-bucket" in args.modes.split(",") else None
    try:
        for mode in args.modes.split(","):
            digests = set()
            for i, engine in enumerate(engines):
                home = work / f"{mode}-{engine}"
                os.environ["CAIRN_DIR"] = str(home)
                server = None
                if mode == "server-bucket":
                    assert moto is not None
                    os.environ["AWS_ENDPOINT_URL"] = moto.endpoint
                    server = Server(moto.bucket(f"bench-{i}-{engine}"), work / f"server-{engine}")
                    os.environ["CAIRN_URL"] = server.url
                else:
                    os.environ.pop("CAIRN_URL", None)
                subprocess.run(["sync"], check=False)
                try:
                    out = work / f"out-{mode}-{engine}" if args.download else None
                    skip = {p.proc.pid for p in (moto, server) if p is not None}
                    seconds, digest, files, merge, fetched, peak = log_once(
                        args.data, engine, clusters.get(engine, {}), out, skip
                    )
                finally:
                    if server is not None:
                        server.stop()
                digests.add(digest)
                who = "1 process" if engine == "single" else f"{args.workers} workers on {engine}"
                row(
                    step=f"log, {mode}, {who}",
                    seconds=round(seconds, 2),
                    files=files,
                    rate=round(files / seconds),
                    finish=round(merge, 2),
                    digest=digest[:19],
                    driver_mib=peak.driver >> 20,
                    worker_mib=peak.worker >> 20 if engine != "single" else None,
                )
                if fetched:
                    row(
                        step=f"download, {mode}, {who}",
                        seconds=round(fetched[0], 2),
                        files=files,
                        rate=round(files / fetched[0]),
                    )
                    shutil.rmtree(work / f"out-{mode}-{engine}", ignore_errors=True)
                shutil.rmtree(home, ignore_errors=True)
            assert len(digests) == 1, f"{mode}: the runs disagree: {digests}"
    finally:
        if moto is not None:
            moto.stop()
        if "dask" in clusters:
            clusters["dask"]["client"].close()
        if "ray" in clusters:
            import ray

            ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    print()
    print("| step | seconds | files/s | of which the finish (merge + commit) | peak RSS MiB |")
    print("|---|---|---|---|---|")
    for r in rows:
        rss = ""
        if "driver_mib" in r:
            rss = f"driver {r['driver_mib']}"
            if r.get("worker_mib") is not None:
                rss += f", worker {r['worker_mib']}"
        print(
            f"| {r['step']} | {r['seconds']} | {r.get('rate', '')} | {r.get('finish', '')} "
            f"| {rss} |"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
