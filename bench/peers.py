"""Peer tools on the same data (issue 12): DVC's `add` and `checkout`, each step a whole
process, with its wall time, peak RSS and the load average when it started, next to the
reference columns of bench/scale.py and bench/run.py.

    /root/.local/bin/uv venv /work/peers/.venv
    /root/.local/bin/uv pip install --python /work/peers/.venv/bin/python dvc
    .venv/bin/python bench/peers.py scale /work/benchdata/m200k --work /work/peers/w200k
    .venv/bin/python bench/peers.py d1 --work /work/peers/wd1

`scale DATA` mirrors bench/scale.py's steps (first log, re-log, one file changed, download
into an empty folder, download again, with the stat walk as reference). `d1` mirrors
bench/run.py's S1, S2, S3, S6 and S6b on a freshly generated D1 with the same mutation.

DVC needs its data inside its repository: the repository (`dvc init --no-scm`, so git is out
of every timing) is WORK/repo, and the data is put at WORK/repo/NAME before any step is timed
(`scale`: a `cp -r` of DATA, timed as a reference column, so DATA itself is never modified;
`d1`: generated there). DVC keeps its defaults (cache link type `reflink,copy`, which copies
on ext4; the cache is WORK/repo/.dvc/cache), with analytics and the update check off and its
site cache dir inside WORK. Each step has a timeout (--timeout, 900 s): a step that runs out
is killed and reported as not finished, with the RSS it had reached.
"""

from __future__ import annotations

import argparse
import os
import select
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from scale import STAT_WALK  # bench/scale.py

HERE = Path(__file__).resolve().parent
GEN = HERE.parent.parent / "shared" / "bench" / "gen_data.py"
PY = sys.executable
MARKER = ".peers-work"  # WORK is removed at start and end only when it carries this


@dataclass
class Step:
    what: str
    seconds: float
    peak_mib: int
    load: float
    finished: bool = True
    note: str = ""
    out: str = ""


class Bench:
    def __init__(self, dvc: str, work: Path, timeout: float, runs: int) -> None:
        self.dvc = dvc
        self.work = work
        self.repo = work / "repo"
        self.timeout = timeout
        self.runs = runs
        self.rows: list[Step] = []
        site_cache = str(work / "site-cache")  # DVC's hash and link caches, else in /var/tmp
        self.env = {**os.environ, "DVC_NO_ANALYTICS": "1", "DVC_SITE_CACHE_DIR": site_cache}
        self.log = work / "steps.log"

    def run(self, argv: list[str], cwd: Path | None = None) -> Step:
        """One whole process: wall time, peak RSS (MiB) and load average at its start."""
        os.sync()  # no dirty pages of the step before throttle this one
        load = os.getloadavg()[0]
        out_path = self.work / "step.out"
        with open(self.log, "ab") as log, open(out_path, "wb") as out:
            log.write(f"$ {' '.join(argv)}\n".encode())
            log.flush()
            t = time.perf_counter()
            proc = subprocess.Popen(
                argv,
                cwd=cwd or self.repo,
                env=self.env,
                stdout=out,
                stderr=log,
                start_new_session=True,
            )
        pidfd = os.pidfd_open(proc.pid)
        try:
            ready, _, _ = select.select([pidfd], [], [], self.timeout)
            if not ready:  # timed out: the peak so far, then the whole group goes
                elapsed = time.perf_counter() - t
                with open(f"/proc/{proc.pid}/status") as proc_status:
                    hwm = next(int(ln.split()[1]) for ln in proc_status if ln.startswith("VmHWM:"))
                os.killpg(proc.pid, signal.SIGKILL)
                os.wait4(proc.pid, 0)
                proc.returncode = -9
                return Step(argv[-1], elapsed, hwm // 1024, load, finished=False)
            _, status, usage = os.wait4(proc.pid, 0)
            elapsed = time.perf_counter() - t
        finally:
            os.close(pidfd)
        proc.returncode = os.waitstatus_to_exitcode(status)
        if proc.returncode != 0:
            raise SystemExit(f"{argv} failed ({proc.returncode}); see {self.log}")
        # ru_maxrss can include the peak of this (small, ~20 MiB) process, folded in at exec;
        # every DVC step peaks far above it
        return Step(argv[-1], elapsed, usage.ru_maxrss // 1024, load, out=out_path.read_text())

    def best(self, argv: list[str], cwd: Path | None = None) -> Step:
        results = [self.run(argv, cwd) for _ in range(self.runs)]
        return min(results, key=lambda s: (not s.finished, s.seconds))

    def row(self, what: str, step: Step, note: str = "") -> bool:
        step.what, step.note = what, note
        self.rows.append(step)
        secs = (
            f"{step.seconds:.2f} s" if step.finished else f"not finished after {self.timeout:.0f} s"
        )
        print(f"{what}: {secs}, {step.peak_mib} MiB, load {step.load:.1f} {note}", flush=True)
        return step.finished

    def version(self, name: str) -> str:
        """What NAME.dvc records now: the .dir md5 (short) and the file count."""
        fields = dict(
            line.strip().removeprefix("- ").split(": ", 1)
            for line in (self.repo / f"{name}.dvc").read_text().splitlines()
            if ": " in line
        )
        return f"{name}.dvc: md5 {fields.get('md5', '?')[:8]}…, {fields.get('nfiles', '?')} files"

    def dvc_cmd(self, *args: str) -> list[str]:
        return [self.dvc, *args]

    def init(self) -> None:
        """A fresh DVC repository in WORK/repo, git left out; its settings are made here."""
        self.repo.mkdir(parents=True)
        if not self.row("`dvc init --no-scm`", self.run(self.dvc_cmd("init", "--no-scm"))):
            raise SystemExit("dvc init did not finish")
        for key, value in (
            ("core.analytics", "false"),
            ("core.check_update", "false"),
            ("core.site_cache_dir", self.env["DVC_SITE_CACHE_DIR"]),
        ):
            subprocess.run([self.dvc, "config", key, value], cwd=self.repo, check=True)

    def walk(self, what: str, folder: Path) -> int:
        walk = self.best([PY, "-c", STAT_WALK, str(folder)])
        files = int(walk.out)
        self.row(what, walk, f"{files} files")
        return files

    def table(self, header: str) -> None:
        print(f"\n| {header} | seconds | peak RSS MiB | load avg (1 min) at start | notes |")
        print("|---|---|---|---|---|")
        for s in self.rows:
            secs = f"{s.seconds:.2f}" if s.finished else f"not finished after {self.timeout:.0f} s"
            rss = str(s.peak_mib) if s.finished else f"{s.peak_mib} (reached)"
            print(f"| {s.what} | {secs} | {rss} | {s.load:.1f} | {s.note} |")
        cache = self.repo / ".dvc" / "cache"
        if cache.exists():
            stored = sum(f.stat().st_blocks * 512 for f in cache.rglob("*") if f.is_file())
            count = sum(1 for f in cache.rglob("*") if f.is_file())
            print(f"\nDVC cache: {count} files, {stored / 2**20:.0f} MiB on disk")


def scale(b: Bench, data: Path, steps: list[str]) -> None:
    ws = b.repo / data.name
    b.init()
    b.row(
        "`cp -r DATA` into the workspace (setup), reference",
        b.run(["cp", "-r", str(data), str(ws)]),
    )
    b.walk("stat walk (Python scandir + stat), reference", ws)
    name = data.name
    if "log" in steps:
        step = b.run(b.dvc_cmd("add", name))
        if not b.row("first log: `dvc add`", step, b.version(name) if step.finished else ""):
            return
    if "relog" in steps:
        b.row("re-log, nothing changed: `dvc add`", b.best(b.dvc_cmd("add", name)), b.version(name))
    if "change" in steps:  # bench/scale.py's change: one more line on the first file
        target = next(p for p in sorted((ws / sorted(os.listdir(ws))[0]).iterdir()))
        with open(target, "ab") as f:
            f.write(b"one more line\n")
        step = b.run(b.dvc_cmd("add", name))
        if not b.row(
            "re-log, one file changed: `dvc add`", step, b.version(name) if step.finished else ""
        ):
            return
        b.row("re-log after that, nothing changed", b.best(b.dvc_cmd("add", name)), b.version(name))
    if "download" in steps:
        shutil.rmtree(ws)
        if not b.row(
            "download into an empty folder: rm DATA, `dvc checkout`",
            b.run(b.dvc_cmd("checkout", data.name + ".dvc")),
        ):
            return
        if "again" in steps:
            b.row(
                "download again (all in place): `dvc checkout`",
                b.best(b.dvc_cmd("checkout", data.name + ".dvc")),
            )
            b.walk("stat walk of the downloaded folder, reference", ws)


def d1(b: Bench, files: int) -> None:
    ws = b.repo / "D1"
    b.init()
    subprocess.run([PY, str(GEN), "d1", str(ws), "--files", str(files)], check=True)
    b.row(
        "ref: `cat` all of D1 > /dev/null",
        b.run(["sh", "-c", "find D1 -type f -exec cat {} + > /dev/null"]),
    )
    b.row("ref: `cp -r D1`", b.run(["cp", "-r", "D1", str(b.work / "cp-D1")]))
    shutil.rmtree(b.work / "cp-D1")
    step = b.run(b.dvc_cmd("add", "D1"))
    if not b.row(
        "S1: first log of D1: `dvc add D1`", step, b.version("D1") if step.finished else ""
    ):
        return
    shutil.copy(b.repo / "D1.dvc", b.work / "D1.dvc.v0")
    b.row("S2: re-log D1 unchanged: `dvc add D1`", b.run(b.dvc_cmd("add", "D1")), b.version("D1"))
    subprocess.run(
        [PY, str(GEN), "mutate-d1", str(ws), "--files", str(files)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    step = b.run(b.dvc_cmd("add", "D1"))
    what = "S3: log after one D1 file changed: `dvc add D1`"
    if not b.row(what, step, b.version("D1") if step.finished else ""):
        return
    # S6 downloads v0: put v0's D1.dvc back (what `git checkout` of it would do), no D1 folder
    shutil.rmtree(ws)
    shutil.copy(b.work / "D1.dvc.v0", b.repo / "D1.dvc")
    step = b.run(b.dvc_cmd("checkout", "D1.dvc"))
    placed = sum(len(names) for _, _, names in os.walk(ws)) if step.finished else 0
    if b.row(
        "S6: download D1 v0 into a fresh folder: `dvc checkout D1.dvc`", step, f"{placed} files"
    ):
        b.row("S6b: second checkout of the same version", b.run(b.dvc_cmd("checkout", "D1.dvc")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("mode", choices=["scale", "d1"])
    ap.add_argument("data", type=Path, nargs="?", help="scale: the folder of files")
    ap.add_argument("--work", type=Path, required=True, help="removed at the end")
    ap.add_argument("--dvc", default="/work/peers/.venv/bin/dvc")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per step")
    ap.add_argument("--runs", type=int, default=1, help="cheap steps: best of N")
    ap.add_argument("--files", type=int, default=20000, help="d1: its file count")
    ap.add_argument("--steps", default="log,relog,change,download,again")
    ap.add_argument("--keep", action="store_true", help="leave WORK in place")
    a = ap.parse_args()
    work: Path = a.work.resolve()
    if work.exists():
        if not (work / MARKER).exists():
            raise SystemExit(f"{work} exists and was not made by peers.py")
        shutil.rmtree(work)
    work.mkdir(parents=True)
    (work / MARKER).touch()
    b = Bench(a.dvc, work, a.timeout, a.runs)
    version = subprocess.run([a.dvc, "--version"], capture_output=True, text=True, check=True)
    print(f"DVC {version.stdout.strip()}, work {work}, timeout {a.timeout:.0f} s per step")
    try:
        if a.mode == "scale":
            if a.data is None:
                raise SystemExit("scale needs DATA")
            scale(b, a.data.resolve(), a.steps.split(","))
        else:
            d1(b, a.files)
        b.table("step" if a.mode == "scale" else "scenario: what")
    finally:
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
