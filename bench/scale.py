"""Scale benchmark (issue 12): log, re-log, diff, list and download a folder of many small
files, each step a whole process, with its wall time and peak RSS, next to the reference
columns measured in the same run (a Python stat walk, `cat` of every file, `cp -r`).

    python ../shared/bench/gen_many.py /work/benchdata/many1m            # 1,000,000 files
    .venv/bin/python bench/scale.py /work/benchdata/many1m [--runs 3] [--skip-cp]
    .venv/bin/python bench/scale.py DATA --via server   # through `cairn server` on loopback
    .venv/bin/python bench/scale.py DATA --via bucket   # embedded, the store in moto's S3

``--via server`` runs `cairn server` (SQLite, a store folder, open mode) in a process of its
own and reports its peak RSS at the end; ``--via bucket`` starts moto's S3 server and sets
``CAIRN_STORE=s3://…`` (packs in the bucket, the index cached locally).

Steps run against a fresh CAIRN_DIR under --work (default: next to the data). Cheap steps are
repeated --runs times and the best is reported (the machine is shared: the load average at
each step is printed next to it). Prints a Markdown table; add it to bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

HERE = Path(__file__).resolve().parent
PY = sys.executable

STAT_WALK = """
import os, sys
n = 0
stack = [sys.argv[1]]
while stack:
    with os.scandir(stack.pop()) as it:
        for e in it:
            if e.is_dir(follow_symlinks=False):
                stack.append(e.path)
            else:
                os.stat(e.path)
                n += 1
print(n)
"""

OP = """
import json, os, sys, time
import cairn
from cairn.cli.common import backend
from cairn.objects import tree
op = sys.argv[1]
t = time.perf_counter()
out = {}
with cairn.init(project="bench", job_type="scale-" + op, save_code=False) as run:
    if op == "log":
        art = cairn.Artifact(sys.argv[2], type="dataset")
        art.add_dir(sys.argv[3])
        run.log_artifact(art)
        s = art.stats
        out = {"version": art.version, "files": art.file_count, "hashed": s.hashed_files,
               "new_objects": s.new_objects}
    elif op == "diff":
        a, b = run.use_artifact(sys.argv[2]), run.use_artifact(sys.argv[3])
        out = {"changes": sum(1 for _ in tree.diff(a.digest, b.digest, backend().object_store.get))}
    elif op == "list":
        art = run.use_artifact(sys.argv[2])
        out = {"files": len(art.files(sys.argv[3]))}
    elif op == "download":
        art = run.use_artifact(sys.argv[2])
        art.download(root=sys.argv[3])
        out = {"files": art.file_count}
    elif op == "download-refused":
        from cairn.errors import DownloadConflictError
        art = run.use_artifact(sys.argv[2])
        try:
            art.download(root=sys.argv[3])
            out = {"refused": 0}
        except DownloadConflictError as exc:
            out = {"refused": len(exc.conflicts)}
if op == "browse":  # the dashboard's file browser, served from this store by a real server
    import statistics, httpx
    from cairn import config
    from cairn.server.deps import ServerSettings
    from cairn.server.testing import ServerThread
    base = f"/p/bench/a/{sys.argv[2].replace(':', '/v/')}/files"
    settings = ServerSettings(config.database_url(), config.cairn_dir() / "store")
    server = ServerThread(settings).start()
    with httpx.Client(base_url=server.url, timeout=600, follow_redirects=True) as http:
        for label, path in (("root", base), ("folder", f"{base}/{sys.argv[3]}"),
                            ("folder, by name", f"{base}/{sys.argv[3]}?start={sys.argv[4]}"),
                            ("deep page", f"{base}/{sys.argv[3]}?offset={sys.argv[5]}")):
            times = []
            for i in range(6):
                t1 = time.perf_counter()
                http.get(path).raise_for_status()
                times.append(time.perf_counter() - t1)
            out[label + " first ms"] = round(times[0] * 1000, 1)
            out[label + " median ms"] = round(statistics.median(times[1:]) * 1000, 1)
    server.stop()
out["seconds"] = time.perf_counter() - t
with open("/proc/self/status") as status:  # this program's own peak (see run())
    out["peak_kib"] = next(int(l.split()[1]) for l in status if l.startswith("VmHWM:"))
print(json.dumps(out))
"""


def run(argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(seconds, peak RSS in MiB, stdout) of one whole process."""
    os.sync()  # no dirty pages of the step before throttle this one
    t = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"{argv} failed ({status})")
    # ru_maxrss also counts the memory of the process that spawned the step (Linux folds the
    # spawning address space's peak in at exec, and subprocess spawns with vfork): a step that
    # reports its own VmHWM is measured by that
    peak = usage.ru_maxrss // 1024
    try:
        peak = json.loads(out.strip().splitlines()[-1])["peak_kib"] // 1024
    except (ValueError, KeyError, IndexError, TypeError):
        pass
    return elapsed, peak, out


def best(n: int, argv: list[str], env: dict[str, str] | None = None) -> tuple[float, int, str]:
    results = [run(argv, env) for _ in range(n)]
    return min(results, key=lambda r: r[0])


def load() -> str:
    return f"{os.getloadavg()[0]:.1f}"


def via(mode: str, work: Path, env: dict[str, str]) -> Callable[[], None]:
    """Point the steps' ``env`` at a server or a bucket store; returns what stops it."""
    if mode == "embedded":
        return lambda: None
    from s3 import Server, make_bucket, start_moto  # bench/s3.py

    if mode == "server":
        server = Server(str(work / "server-store"), work, direct=True)
        env["CAIRN_URL"] = server.url

        def stop_server() -> None:
            with open(f"/proc/{server.proc.pid}/status") as status:
                peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
            print(f"server peak RSS: {peak // 1024} MiB")
            server.stop()

        return stop_server
    keys = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench"}
    os.environ.update(keys, AWS_REGION="us-east-1")
    moto, endpoint = start_moto()
    make_bucket(endpoint, "scale")
    env.update(keys, AWS_REGION="us-east-1", AWS_ENDPOINT_URL=endpoint)
    env["CAIRN_STORE"] = "s3://scale/store"

    def stop_moto() -> None:
        moto.terminate()
        moto.wait()

    return stop_moto


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data", type=Path)
    ap.add_argument("--work", type=Path, default=None)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--skip-cp", action="store_true", help="leave out cat and cp -r")
    ap.add_argument("--steps", default="log,relog,change,diff,list,download,again,refused")
    ap.add_argument("--via", choices=["embedded", "server", "bucket"], default="embedded")
    a = ap.parse_args()
    data = a.data.resolve()
    work = (a.work or data.parent / (data.name + "-work")).resolve()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    env = {**os.environ, "CAIRN_DIR": str(work / "home"), "CAIRN_QUIET": "1"}
    env.pop("CAIRN_URL", None)
    stop_services = via(a.via, work, env)
    steps = a.steps.split(",")
    rows: list[tuple[str, str, str, str]] = []

    def row(what: str, r: tuple[float, int, str], note: str = "") -> None:
        rows.append((what, f"{r[0]:.2f}", str(r[1]), f"{load()} {note}".strip()))
        print(f"{what}: {r[0]:.2f} s, {r[1]} MiB, load {load()} {note}", file=sys.stderr)

    walk = best(a.runs, [PY, "-c", STAT_WALK, str(data)])
    files = int(walk[2])
    row("stat walk (Python scandir + stat)", walk, f"{files} files")
    if not a.skip_cp:
        row("cat of every file", run(["sh", "-c", f"find {data} -type f | xargs cat >/dev/null"]))
        cp = run(["cp", "-r", str(data), str(work / "cp")])
        row("cp -r", cp)
        # kept until the end: ext4 without a journal (this machine's) does not reuse an inode
        # freed in the last minute or so, and scans past each one, so creating a million files
        # right after deleting a million took the download three times as long as cp -r

    def op(*args: str) -> list[str]:
        return [PY, "-c", OP, *args]

    if "log" in steps:
        row("first log", run(op("log", "many", str(data)), env))
    if "relog" in steps:
        row("re-log, nothing changed", best(a.runs, op("log", "many", str(data)), env))
    if "change" in steps:
        target = next(p for p in sorted((data / sorted(os.listdir(data))[0]).iterdir()))
        with open(target, "ab") as f:
            f.write(b"one more line\n")
        row("re-log, one file changed", run(op("log", "many", str(data)), env))
        row("re-log after that, nothing changed", best(a.runs, op("log", "many", str(data)), env))
    if "diff" in steps:
        r = best(a.runs, op("diff", "many:v0", "many:latest"), env)
        row("diff v0 -> latest", r, json.loads(r[2])["changes"].__str__() + " changes")
    if "list" in steps:
        folder = sorted(os.listdir(data))[len(os.listdir(data)) // 2]
        row("list one folder", best(a.runs, op("list", "many:latest", folder), env))
    if "browse" in steps:  # the first answer of each page is reported apart (cold caches)
        top = sorted(os.listdir(data))
        folder = top[len(top) // 2] if (data / top[len(top) // 2]).is_dir() else ""
        inside = sorted(os.listdir(data / folder))
        r = run(
            op("browse", "many:latest", folder, inside[len(inside) // 2], str(len(inside) // 2)),
            env,
        )
        row(
            "dashboard file browser",
            r,
            json.dumps({k: v for k, v in json.loads(r[2]).items() if "ms" in k}),
        )
    if "download" in steps:
        dest = work / "download"
        row("download into an empty folder", run(op("download", "many:latest", str(dest)), env))
        if "again" in steps:
            again = best(a.runs, op("download", "many:latest", str(dest)), env)
            row("download again (all in place)", again)
            # the fair reference for it: a stat walk of the same folder, as warm as it was
            walked = best(a.runs, [PY, "-c", STAT_WALK, str(dest)])
            row("stat walk of the downloaded folder, reference", walked)
        if "refused" in steps:  # the check pass alone: one modified file, in the last folder
            last = dest / sorted(os.listdir(dest))[-1]
            victim = last / sorted(os.listdir(last))[-1]
            victim.write_bytes(b"edited by the user\n")
            r = run(op("download-refused", "many:latest", str(dest)), env)
            row(
                "download over 1 modified file (refused)",
                r,
                f"{json.loads(r[2])['refused']} conflict",
            )
        shutil.rmtree(dest, ignore_errors=True)
    home = work / "home"
    sizes = {
        p.name: sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
        for p in home.iterdir()
        if p.is_dir()
    }
    print("| step | seconds | peak RSS MiB | load avg (1 min) |")
    print("|---|---|---|---|")
    for what, secs, rss, note in rows:
        print(f"| {what} | {secs} | {rss} | {note} |")
    print()
    print(f"store folders under CAIRN_DIR: {json.dumps(sizes)} ({files} files)")
    stop_services()
    shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
