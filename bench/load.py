"""Load benchmark: many clients listing, resolving and fetching small artifacts from one server.

    .venv/bin/python bench/load.py [--clients 50] [--seconds 60] [--workers 2] [--db postgres]

Starts `cairn server` on 127.0.0.1 (a free port) over a fresh database (a new PostgreSQL
database on the test server, dropped afterwards, or a SQLite file) and a fresh store, logs a
seeded project through the server (``--artifacts`` artifacts of 3 versions, each 8 files of
1-16 KiB), then runs ``--clients`` clients for ``--seconds`` seconds. Each client picks,
seeded, one operation at a time:

* ``list``: the project's artifacts (GET /projects/P/artifacts), 40 %;
* ``resolve``: an artifact's ``latest`` (GET .../versions/latest), 40 %;
* ``fetch``: resolve, then its tree (GET /objects/D/subtree) and its files (POST
  /objects/fetch), 20 %: the bytes of a small artifact, as `download()` moves them.

Latency is reported per operation (a fetch is three requests in a row) and per HTTP request.

Clients are threads in ``--procs`` processes (the client side needs CPU too; everything shares
the machine's cores). Prints operations/s, p50/p95/p99 latency per operation kind and overall,
errors, and the machine's load average before and after. Loopback only; bounded by
``--seconds``; the seed makes the mix repeatable.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PG = os.environ.get("CAIRN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
MIX = (("list", 0.4), ("resolve", 0.4), ("fetch", 0.2))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fresh_database(kind: str, folder: Path) -> tuple[str, Any]:
    """(URL, a function that drops it)."""
    if kind == "sqlite":
        return f"sqlite:///{folder / 'load.db'}", lambda: None
    import sqlalchemy as sa

    name = "load_" + uuid.uuid4().hex[:10]
    admin = sa.create_engine(PG, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = PG.rsplit("/", 1)[0] + "/" + name

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()

    return url, drop


def server_cpu(pid: int) -> float:
    """CPU seconds (user + system) used so far by the server and its worker processes: what
    an operation costs the server, whatever else shares the machine."""
    import psutil

    proc = psutil.Process(pid)
    total = 0.0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system
    return total


def seed(url: str, key: str, artifacts: int, work: Path) -> None:
    env = {**os.environ, "CAIRN_URL": url, "CAIRN_API_KEY": key, "CAIRN_QUIET": "1",
           "CAIRN_DIR": str(work / "client")}  # fmt: skip
    script = f"""
import random, cairn
from pathlib import Path
rng = random.Random(7)
for a in range({artifacts}):
    for v in range(3):
        folder = Path({str(work)!r}) / f"a{{a}}v{{v}}"
        folder.mkdir(parents=True)
        for i in range(8):
            (folder / f"f{{i}}.bin").write_bytes(rng.randbytes(rng.randint(1024, 16384)))
        with cairn.init(project="load", job_type="seed") as run:
            art = cairn.Artifact(f"a{{a}}", "dataset")
            art.add_dir(folder)
            run.log_artifact(art)
"""
    subprocess.run([PY, "-c", script], env=env, check=True, cwd=work)


def client_proc(url: str, key: str, threads: int, seconds: float, seed_: int, artifacts: int,
                out: Any) -> None:  # fmt: skip
    stop_at = time.monotonic() + seconds
    results: list[tuple[str, float, bool]] = []
    lock = threading.Lock()

    def one(n: int) -> None:
        rng = random.Random(seed_ * 1000 + n)
        mine: list[tuple[str, float, bool]] = []
        with httpx.Client(base_url=url + "/api/v1", timeout=60,
                          headers={"Authorization": f"Bearer {key}"}) as web:  # fmt: skip
            while time.monotonic() < stop_at:
                kind = rng.choices([k for k, _ in MIX], [w for _, w in MIX])[0]
                name = f"a{rng.randrange(artifacts)}"
                began = time.perf_counter()
                ok = True

                def timed(method: str, path: str, **kw: Any) -> httpx.Response:
                    start = time.perf_counter()
                    answer = web.request(method, path, **kw)
                    mine.append(("request", time.perf_counter() - start, answer.is_success))
                    return answer

                try:
                    if kind == "list":
                        ok = timed("GET", "/projects/load/artifacts").status_code == 200
                    elif kind == "resolve":
                        path = f"/projects/load/artifacts/{name}/versions/latest"
                        ok = timed("GET", path).is_success
                    else:
                        v = timed("GET", f"/projects/load/artifacts/{name}/versions/latest")
                        tree = timed("GET", f"/objects/{v.json()['digest']}/subtree")
                        blobs = _blob_digests(tree.content)
                        got = timed("POST", "/objects/fetch", json={"digests": blobs})
                        ok = v.is_success and tree.is_success and got.is_success and bool(blobs)
                except httpx.HTTPError:
                    ok = False
                mine.append((kind, time.perf_counter() - began, ok))
        with lock:
            results.extend(mine)

    workers = [threading.Thread(target=one, args=(n,)) for n in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    out.put(results)


def _frames(data: bytes) -> list[tuple[bytes, bytes]]:
    found = []
    at = 0
    while at < len(data):
        end = data.index(b"\n", at)
        digest, length = data[at:end].split(b" ")
        body = data[end + 1 : end + 1 + int(length)]
        found.append((digest, body))
        at = end + 1 + int(length)
    return found


def _blob_digests(data: bytes) -> list[str]:
    blobs: list[str] = []
    for _, body in _frames(data):
        try:
            doc = json.loads(body)
        except ValueError:
            continue
        for entry in doc.get("entries", []):
            if entry.get("t") == "f" and not entry.get("c"):
                blobs.append(entry["d"])
    return blobs


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--procs", type=int, default=5, help="client processes")
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--workers", type=int, default=2, help="server processes")
    parser.add_argument("--threads", type=int, default=None, help="threads per server process")
    parser.add_argument("--db", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument("--artifacts", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument(
        "--profile",
        metavar="SVG",
        help="py-spy record the server into SVG (or collapsed stacks, for a .txt)",
    )
    parser.add_argument("--server-arg", action="append", default=[])
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="cairn-load-"))
    url_db, drop = fresh_database(args.db, work)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "CAIRN_DIR": str(work / "server-home"), "PYTHONPATH": str(ROOT / "src")}
    log = open(work / "server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [PY, "-c", "from cairn.cli.main import main; main()", "server", "--host", "127.0.0.1",
         "--port", str(port), "--database-url", url_db, "--store", str(work / "store"),
         "--workers", str(args.workers), "--log-level", "warning",
         *(["--threads", str(args.threads)] if args.threads else []), *args.server_arg],
        env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    spy = None
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(url + "/api/v1/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if server.poll() is not None or time.monotonic() > deadline:
                raise SystemExit((work / "server.log").read_text())
            time.sleep(0.2)
        # a plain user, as clients are: every request also checks their role in the project
        # (the first log creates it, with them as its admin)
        made = subprocess.run(
            [PY, "-c", "from cairn.cli.main import main; main()", "server", "create-user",
             "bench", "--database-url", url_db],
            env=env, check=True, capture_output=True, text=True,
        )  # fmt: skip
        key = next(w for w in made.stdout.split() if w.startswith("cairn_"))
        seed(url, key, args.artifacts, work)
        if args.profile:
            spy = subprocess.Popen(
                # --gil: samples of the thread holding the GIL, i.e. where the CPU goes, not
                # the waits on PostgreSQL
                ["py-spy", "record", "--gil", "--subprocesses", "--pid", str(server.pid), "-o",
                 args.profile, "--duration", str(int(args.seconds)), "--nonblocking",
                 *(["--format", "raw"] if args.profile.endswith(".txt") else [])],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )  # fmt: skip
        load_before = os.getloadavg()
        cpu_before = server_cpu(server.pid)
        queue: Any = mp.Queue()
        per = [args.clients // args.procs + (i < args.clients % args.procs)
               for i in range(args.procs)]  # fmt: skip
        procs = [
            mp.Process(target=client_proc,
                       args=(url, key, n, args.seconds, args.seed * 100 + i, args.artifacts,
                             queue))
            for i, n in enumerate(per) if n
        ]  # fmt: skip
        began = time.monotonic()
        for p in procs:
            p.start()
        results: list[tuple[str, float, bool]] = []
        for _ in procs:
            results.extend(queue.get(timeout=args.seconds + 300))
        for p in procs:
            p.join()
        elapsed = time.monotonic() - began
        cpu = server_cpu(server.pid) - cpu_before
        load_after = os.getloadavg()
    finally:
        if spy is not None:
            spy.wait(timeout=120)
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
        log.close()
        drop()

    requests = [r for r in results if r[0] == "request"]
    results = [r for r in results if r[0] != "request"]
    ok = [r for r in results if r[2]]
    print(f"clients {args.clients} in {args.procs} processes, server workers {args.workers} "
          f"(threads {args.threads or 'default'}), "
          f"{args.db}, {elapsed:.1f} s")  # fmt: skip
    print(f"operations {len(results)} ({len(results) / elapsed:.0f}/s), errors "
          f"{len(results) - len(ok)}; HTTP requests {len(requests)} "
          f"({len(requests) / elapsed:.0f}/s)")  # fmt: skip
    for kind in ("list", "resolve", "fetch", "all", "request"):
        pool = requests if kind == "request" else results
        times = [t for k, t, good in pool if good and (kind in ("all", "request") or k == kind)]
        print(f"  {kind:8} n={len(times):6}  p50 {percentile(times, 0.5) * 1000:7.1f} ms  "
              f"p95 {percentile(times, 0.95) * 1000:7.1f} ms  "
              f"p99 {percentile(times, 0.99) * 1000:7.1f} ms")  # fmt: skip
    print(f"server CPU {cpu:.1f} s: {cpu * 1000 / max(len(results), 1):.2f} ms per operation, "
          f"so {os.cpu_count()} cores given to the server alone serve "
          f"{(os.cpu_count() or 1) * len(results) / max(cpu, 1e-9):.0f} operations/s")  # fmt: skip
    print(f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f} "
          f"(1 min; {os.cpu_count()} cores)")  # fmt: skip


if __name__ == "__main__":
    main()
