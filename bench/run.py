"""The core benchmark: scenarios S1-S6 on the anchor datasets D1 and D2, each a whole process.

    .venv/bin/python bench/run.py [--files 20000] [--size 2147483648] [--work bench/data]

Generates the data with ../shared/bench/gen_data.py (kept between runs), then times each
scenario against a fresh CAIRN_DIR, with `cat` and `cp -r` on the same data as reference points.
Prints a Markdown table; add it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
GEN = HERE.parent.parent / "shared" / "bench" / "gen_data.py"
PY = sys.executable


def sh(cmd: str) -> float:
    t = time.perf_counter()
    subprocess.run(cmd, shell=True, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t


def drop_caches_hint() -> None:
    # Cold-cache numbers need root and `echo 3 > /proc/sys/vm/drop_caches`; we report warm
    # page-cache figures (the data was just generated), like the reference tools' figures.
    pass


def cairn_op(env: dict[str, str], *args: str) -> tuple[float, dict[str, object]]:
    # start every scenario with no dirty pages left by the one before: on a VM disk, writeback
    # of earlier writes otherwise throttles whatever runs next
    os.sync()
    t = time.perf_counter()
    out = subprocess.run(
        [PY, str(HERE / "cairn_op.py"), *args], env=env, check=True, capture_output=True, text=True
    )
    elapsed = time.perf_counter() - t
    return elapsed, json.loads(out.stdout.strip().splitlines()[-1])


def du(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for f in files:
            total += os.lstat(os.path.join(dirpath, f)).st_size
    return total


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--files", type=int, default=20000)
    ap.add_argument("--size", type=int, default=2 << 30)
    ap.add_argument("--work", type=Path, default=HERE / "data")
    ap.add_argument("--skip-d2", action="store_true")
    ap.add_argument(
        "--remote",
        action="store_true",
        help="log and download through `cairn server` (started here, on 127.0.0.1)",
    )
    ap.add_argument("--remote-db", help="the server's database URL (default: SQLite)")
    args = ap.parse_args()
    work: Path = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    d1, d2 = work / "D1", work / "D2" / "model.ckpt"
    # fresh data every run: the mutations below change it in place
    shutil.rmtree(work / "D1", ignore_errors=True)
    shutil.rmtree(work / "D2", ignore_errors=True)
    subprocess.run([PY, str(GEN), "d1", str(d1), "--files", str(args.files)], check=True)
    if not args.skip_d2:
        subprocess.run([PY, str(GEN), "d2", str(d2), "--size", str(args.size)], check=True)

    home = work / "cairn-home"
    shutil.rmtree(home, ignore_errors=True)
    env = {**os.environ, "CAIRN_DIR": str(home), "CAIRN_QUIET": "1"}
    env.pop("CAIRN_DATABASE_URL", None)
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure as users run it: with cached bytecode
    store = home / "store"
    server = None
    if args.remote:
        server, env["CAIRN_URL"], store = start_server(work, env, args.remote_db)
    try:
        run_scenarios(args, work, d1, d2, env, store)
    finally:
        if server is not None:
            server.terminate()
            server.wait(30)


def start_server(
    work: Path, env: dict[str, str], database_url: str | None
) -> tuple[subprocess.Popen[bytes], str, Path]:
    """`cairn server` with its own CAIRN_DIR (its store is what S1-S5 measure); the clients
    keep theirs (the download cache and the hash cache)."""
    import socket
    import urllib.request

    server_home = work / "server-home"
    shutil.rmtree(server_home, ignore_errors=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cmd = [PY, "-c", "from cairn.cli.main import main; main()", "server", "--port", str(port)]
    cmd += ["--log-level", "warning"]
    if database_url:
        cmd += ["--database-url", database_url]
    server = subprocess.Popen(cmd, env={**env, "CAIRN_DIR": str(server_home)})
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(url + "/api/v1/health", timeout=1):
                break
        except OSError:
            time.sleep(0.05)
    else:
        server.terminate()
        raise SystemExit("cairn server did not start")
    print(f"server: {url}, store {server_home / 'store'}", flush=True)
    return server, url, server_home / "store"


def run_scenarios(
    args: argparse.Namespace, work: Path, d1: Path, d2: Path, env: dict[str, str], store: Path
) -> None:
    rows: list[tuple[str, str, float, str]] = []

    def record(sid: str, what: str, seconds: float, note: str = "") -> None:
        rows.append((sid, what, seconds, note))
        print(f"{sid:4} {what:42} {seconds:7.2f} s  {note}", flush=True)

    record("ref", "cat D1 > /dev/null", sh(f"find {d1} -type f -exec cat {{}} + > /dev/null"))
    shutil.rmtree(work / "cp-D1", ignore_errors=True)
    record("ref", "cp -r D1", sh(f"cp -r {d1} {work / 'cp-D1'}"))
    # the copy stays until the end: on ext4 without a journal, files created right after many
    # were deleted are slower to create (freed inodes are skipped for a minute), which S6 is not

    before = 0
    t, out = cairn_op(env, "log", "d1", str(d1))
    after = du(store)
    record(
        "S1", "first log of D1", t, f"{out['version']}, stored {(after - before) / 2**20:.0f} MiB"
    )
    before = after
    t, out = cairn_op(env, "log", "d1", str(d1))
    after = du(store)
    record(
        "S2",
        "re-log D1 unchanged",
        t,
        f"{out['version']}, hashed {out['hashed_files']} files, stored {after - before} B",
    )
    subprocess.run(
        [PY, str(GEN), "mutate-d1", str(d1), "--files", str(args.files)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    before = after
    t, out = cairn_op(env, "log", "d1", str(d1))
    after = du(store)
    record(
        "S3",
        "log after one D1 file changed",
        t,
        f"{out['version']}, hashed {out['hashed_files']} files, stored "
        f"{(after - before) / 1024:.0f} KiB",
    )
    dest = work / "download"
    shutil.rmtree(dest, ignore_errors=True)
    t, out = cairn_op(env, "download", "d1:v0", str(dest))
    record("S6", "download D1 v0 into a fresh folder", t, f"{out['files']} files")
    t, out = cairn_op(env, "download", "d1:v0", str(dest))
    record("S6b", "second download of the same version", t)
    shutil.rmtree(dest, ignore_errors=True)
    shutil.rmtree(work / "cp-D1", ignore_errors=True)

    if not args.skip_d2:
        record("ref", "cat D2 > /dev/null", sh(f"cat {d2} > /dev/null"))
        before = du(store)
        t, out = cairn_op(env, "log", "d2", str(d2))
        after = du(store)
        record("S4", "first log of D2", t, f"stored {(after - before) / 2**20:.0f} MiB")
        subprocess.run([PY, str(GEN), "mutate-d2", str(d2)], check=True, stdout=subprocess.DEVNULL)
        before = after
        t, out = cairn_op(env, "log", "d2", str(d2))
        after = du(store)
        record(
            "S5",
            "log after 1 MiB of D2 overwritten",
            t,
            f"{out['version']}, stored {(after - before) / 2**20:.2f} MiB",
        )

    print("\n| scenario | what | seconds | notes |\n|---|---|---|---|")
    for sid, what, seconds, note in rows:
        print(f"| {sid} | {what} | {seconds:.2f} | {note} |")


if __name__ == "__main__":
    main()
