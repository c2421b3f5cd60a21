"""One version from many workers (issue 13): a folder of many small files logged by one process
vs by two workers on Dask and on Ray, embedded and through a server on an S3 bucket.

Data: ``python3 ../shared/bench/gen_many.py DATA --files N`` (made here when DATA does not
exist). Each run starts from a fresh ``CAIRN_DIR`` (no hash cache: every file is read and
hashed), and for the server mode a fresh ``cairn server`` process (SQLite, open) on a fresh
bucket of a moto S3 server (its own process); the workers upload on signed URLs. The
clusters are started before the timings (their start is reported apart). Reference, in the
same run: a stat walk of DATA (Python ``os.scandir`` + ``stat``), and ``cat`` of every file.

    .venv/bin/python bench/distributed.py /work/benchdata/many100k --files 100000 \
        [--modes embedded,server-bucket] [--engines single,dask,ray] [--workers 2]

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


def log_once(data: Path, engine: str, options: dict[str, Any]) -> tuple[float, str, int]:
    import cairn
    import cairn.distributed
    from cairn.sdk.backend import reset_backends

    reset_backends()
    started = time.perf_counter()
    with cairn.init(project="bench", job_type=engine) as run:
        if engine == "single":
            art = run.log_artifact(data, name="many")
        else:
            art = cairn.distributed.log_dir(data, "many", **options)
    seconds = time.perf_counter() - started
    reset_backends()
    return seconds, art.digest, art.file_count


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--files", type=int, default=100_000)
    ap.add_argument("--modes", default="embedded,server-bucket")
    ap.add_argument("--engines", default="single,dask,ray")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
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
            n_workers=args.workers, threads_per_worker=1, processes=True, dashboard_address=None
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
                    seconds, digest, files = log_once(args.data, engine, clusters.get(engine, {}))
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
                    digest=digest[:19],
                )
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
    print("| step | seconds | files/s |")
    print("|---|---|---|")
    for r in rows:
        print(f"| {r['step']} | {r['seconds']} | {r.get('rate', '')} |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
