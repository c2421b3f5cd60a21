"""Reading through ``cairn://`` against reading the downloaded copy (issue 18).

  F1: one ~1 GiB Parquet file (8 float64 columns of seeded random numbers, 128 row groups),
      read whole with ``pyarrow.parquet.read_table``: from the downloaded file, and from
      ``cairn://`` (``filesystem=fsspec.filesystem("cairn")``, ranged reads of its chunks).
  F2: the 20,000-file folder of ../shared/bench/gen_data.py (D1): every file read: from the
      downloaded folder (``open().read()``), and from ``cairn://`` (``fs.find`` + ``fs.cat``).

Each read runs in a fresh process (cold block cache, warm page cache: the store's packs and the
downloaded files were just written, so both sides read from memory). Embedded store under
``--work`` (default bench/data/fs), or through a ``cairn server`` process with ``--remote``.

Usage: .venv/bin/python bench/fs_read.py [--work DIR] [--rows N] [--files N] [--repeat 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
# ../shared from the repository (a worktree under wt/ has it one level further up)
GEN = (
    next(
        (p for p in (HERE.parents[1], HERE.parents[2]) if (p / "shared" / "bench").is_dir()),
        HERE.parents[1],
    )
    / "shared"
    / "bench"
    / "gen_data.py"
)

READ_PARQUET_LOCAL = """
import sys, time, pyarrow.parquet as pq
t = time.perf_counter(); table = pq.read_table(sys.argv[1]); dt = time.perf_counter() - t
print(dt, table.num_rows)
"""
READ_PARQUET_CAIRN = """
import sys, time, fsspec, pyarrow.parquet as pq
t = time.perf_counter()
table = pq.read_table(sys.argv[1], filesystem=fsspec.filesystem("cairn"))
dt = time.perf_counter() - t
print(dt, table.num_rows)
"""
READ_FOLDER_LOCAL = """
import os, sys, time
t = time.perf_counter(); n = 0
for dirpath, _, names in os.walk(sys.argv[1]):
    for name in names:
        with open(os.path.join(dirpath, name), "rb") as f:
            n += len(f.read())
print(time.perf_counter() - t, n)
"""
READ_FOLDER_CAIRN = """
import sys, time, fsspec
fs = fsspec.filesystem("cairn")
t = time.perf_counter()
paths = fs.find(sys.argv[1])
n = sum(len(b) for b in fs.cat(paths).values())
print(time.perf_counter() - t, n)
"""


ABORTS_AT_EXIT: list[str] = []


def timed(script: str, arg: str, env: dict[str, str]) -> tuple[float, int]:
    out = subprocess.run(
        [sys.executable, "-c", script, arg], env=env, capture_output=True, text=True, check=False
    )
    if out.returncode:
        # pyarrow reading through any Python (fsspec) filesystem, its in-memory one included,
        # sometimes aborts while the interpreter exits, after the read was done and printed
        # (apache/arrow#39162): counted, not a failed read
        if "terminate called without an active exception" in out.stderr and out.stdout.strip():
            ABORTS_AT_EXIT.append(arg)
        else:
            raise SystemExit(out.stderr)
    seconds, count = out.stdout.split()
    return float(seconds), int(count)


def make_parquet(path: Path, rows: int) -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(18)
    group = rows // 128
    with pq.ParquetWriter(path, pa.schema([(f"c{i}", pa.float64()) for i in range(8)])) as w:
        for _ in range(128):
            cols = {f"c{i}": rng.random(group) for i in range(8)}
            w.write_table(pa.table(cols), row_group_size=group)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=HERE / "data" / "fs")
    ap.add_argument("--rows", type=int, default=16 << 20)  # x 8 columns x 8 bytes = 1 GiB
    ap.add_argument("--files", type=int, default=20_000)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--remote", action="store_true", help="read through a cairn server")
    args = ap.parse_args()
    work: Path = args.work.absolute()
    shutil.rmtree(work, ignore_errors=True)
    (work / "src").mkdir(parents=True)
    env = {**os.environ, "CAIRN_DIR": str(work / "home"), "CAIRN_QUIET": "1"}
    for var in ("CAIRN_URL", "CAIRN_API_KEY", "CAIRN_STORE", "CAIRN_DATABASE_URL"):
        env.pop(var, None)

    parquet = work / "src" / "big.parquet"
    make_parquet(parquet, args.rows)
    subprocess.run(
        [sys.executable, str(GEN), "d1", str(work / "src" / "d1"), "--files", str(args.files)],
        check=True,
        capture_output=True,
    )
    log = (
        "import sys, cairn\n"
        "with cairn.init(project='bench') as run:\n"
        "    run.log_artifact(sys.argv[1] + '/big.parquet', name='big', type='dataset')\n"
        "    run.log_artifact(sys.argv[1] + '/d1', name='d1', type='dataset')\n"
    )
    subprocess.run([sys.executable, "-c", log, str(work / "src")], env=env, check=True)

    server = None
    if args.remote:
        port = free_port()
        server = subprocess.Popen(
            [str(Path(sys.executable).parent / "cairn"), "server", "--port", str(port)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(5)
        env = {**env, "CAIRN_URL": f"http://127.0.0.1:{port}", "CAIRN_DIR": str(work / "client")}

    down = work / "down"
    get = (
        "import sys, cairn\n"
        "api = cairn.Api('bench')\n"
        "api.artifact('big:v0').download(sys.argv[1] + '/big')\n"
        "api.artifact('d1:v0').download(sys.argv[1] + '/d1')\n"
    )
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", get, str(down)], env=env, check=True)
    download_s = time.perf_counter() - t

    results: dict[str, list[float]] = {
        k: [] for k in ("f1-local", "f1-cairn", "f2-local", "f2-cairn")
    }
    for _ in range(args.repeat):
        results["f1-local"].append(
            timed(READ_PARQUET_LOCAL, str(down / "big" / "big.parquet"), env)[0]
        )
        results["f1-cairn"].append(timed(READ_PARQUET_CAIRN, "bench/big:v0/big.parquet", env)[0])
        results["f2-local"].append(timed(READ_FOLDER_LOCAL, str(down / "d1"), env)[0])
        results["f2-cairn"].append(timed(READ_FOLDER_CAIRN, "cairn://bench/d1:v0", env)[0])
    if server is not None:
        server.terminate()
        server.wait()
    summary = {
        "parquet_bytes": parquet.stat().st_size,
        "files": args.files,
        "download_both_s": round(download_s, 2),
        **{k: [round(x, 2) for x in v] for k, v in results.items()},
        "f1_ratio": round(
            statistics.median(results["f1-cairn"]) / statistics.median(results["f1-local"]), 2
        ),
        "f2_ratio": round(
            statistics.median(results["f2-cairn"]) / statistics.median(results["f2-local"]), 2
        ),
        "aborted_at_exit": ABORTS_AT_EXIT,
    }
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
