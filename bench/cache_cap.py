"""A client's download with and without a cap on its cache (CAIRN_CACHE_MAX, issue 17).

One dataset (5,000 files of 4-64 KiB in 50 folders and one 300 MiB file, seeded, ~490 MB) is
logged to a server (in a thread of this process, SQLite, a store folder on loopback), then
downloaded into a fresh folder with a fresh client cache, for each cap given, ``--repeat``
times in turn: wall and CPU seconds (this process: client and server), the largest the cache
got while the download ran (polled every 5 ms) and its size after.

Usage: .venv/bin/python bench/cache_cap.py [--work DIR] [--repeat 3] [CAP ...]
       (caps: none, default, or any CAIRN_CACHE_MAX value; default: none default 100MB)
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import shutil
import threading
import time
from pathlib import Path


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _make(data: Path) -> None:
    if data.exists():
        return
    rnd = random.Random(0)
    for d in range(50):
        (data / f"d{d:02d}").mkdir(parents=True)
        for i in range(100):
            size = rnd.randint(4, 64) << 10
            (data / f"d{d:02d}" / f"f{i:03d}.bin").write_bytes(rnd.randbytes(size))
    (data / "big.bin").write_bytes(b"".join(rnd.randbytes(1 << 20) for _ in range(300)))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--work", type=Path, default=Path(__file__).parent / "data" / "cache")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("caps", nargs="*", default=["none", "default", "100MB"])
    args = parser.parse_args()
    work: Path = args.work.absolute()
    data = work / "data"
    _make(data)
    for folder in ("server", "uploader"):
        shutil.rmtree(work / folder, ignore_errors=True)
    (work / "server").mkdir(parents=True)
    os.environ["CAIRN_QUIET"] = "1"
    os.environ["CAIRN_DIR"] = str(work / "uploader")

    import cairn
    from cairn.client.cache_limit import cache_bytes
    from cairn.sdk.backend import reset_backends
    from cairn.server.deps import ServerSettings
    from cairn.server.testing import ServerThread

    settings = ServerSettings(
        database_url=f"sqlite:///{work / 'server' / 'cairn.db'}", store=work / "server" / "store"
    )
    with ServerThread(settings) as server:
        os.environ["CAIRN_URL"] = server.url
        reset_backends()
        with cairn.init(project="bench", job_type="log") as run:
            art = cairn.Artifact("ds", type="dataset")
            art.add_dir(data)
            run.log_artifact(art)
        reset_backends()
        total = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
        print(f"download: {total / 1e6:.0f} MB; caps: {' '.join(args.caps)}")
        for rep in range(args.repeat):
            for cap in args.caps:
                home, out = work / "client", work / "out"
                shutil.rmtree(home, ignore_errors=True)
                shutil.rmtree(out, ignore_errors=True)
                os.environ["CAIRN_DIR"] = str(home)
                if cap == "default":
                    os.environ.pop("CAIRN_CACHE_MAX", None)
                else:
                    os.environ["CAIRN_CACHE_MAX"] = cap
                reset_backends()
                os.sync()
                root = home / "cache" / "objects"
                peak = 0
                done = threading.Event()

                def watch(root: Path = root, done: threading.Event = done) -> None:
                    nonlocal peak
                    while not done.wait(0.005):
                        peak = max(peak, cache_bytes(root))

                watcher = threading.Thread(target=watch)
                watcher.start()
                start, cpu = time.perf_counter(), _cpu()
                cairn.Api("bench").artifact("ds:v0").download(root=out)
                reset_backends()
                wall, cpu = time.perf_counter() - start, _cpu() - cpu
                done.set()
                watcher.join()
                print(
                    f"run {rep + 1} cap={cap:8s} {wall:6.2f} s wall {cpu:6.2f} s cpu  "
                    f"cache peak {peak / 1e6:6.1f} MB, after {cache_bytes(root) / 1e6:6.1f} MB",
                    flush=True,
                )


if __name__ == "__main__":
    main()
