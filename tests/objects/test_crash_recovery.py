"""The store does not grow without bound after crashes: logs and gcs killed with SIGKILL leave
packs that a later `cairn gc` reclaims (seeded, bounded: a few kills each)."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import cairn
import cairn.objects.packs.local as local
from cairn.sdk.backend import reset_backends

CLI = [sys.executable, "-c", "from cairn.cli.main import main; main()"]

LOGGER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import cairn
    import cairn.objects.packs.local as local
    local.PACK_TARGET = 2 << 20  # several sealed packs per log
    folder, name = Path(sys.argv[1]), sys.argv[2]
    with cairn.init(project="p", save_code=False) as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)
    """
)


@pytest.fixture(autouse=True)
def _fresh(cairn_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    reset_backends()
    yield
    reset_backends()


def _folder(root: Path, rnd: random.Random, files: int, size: int) -> dict[str, bytes]:
    made = {f"f{i}.bin": rnd.randbytes(size) for i in range(files)}
    root.mkdir(parents=True, exist_ok=True)
    for name, data in made.items():
        (root / name).write_bytes(data)
    return made


def _log(name: str, folder: Path) -> None:
    with cairn.init(project="p", save_code=False) as run:
        art = cairn.Artifact(name, type="dataset")
        art.add_dir(folder)
        run.log_artifact(art)


def _store() -> Path:
    return Path(os.environ["CAIRN_DIR"]) / "store"


def _writing() -> bool:
    tmp = _store() / "tmp"
    return tmp.is_dir() and any(tmp.iterdir())


def _pack_count() -> int:
    packs = _store() / "packs"
    return sum(1 for _ in packs.rglob("*.pack")) if packs.is_dir() else 0


def _pack_bytes() -> int:
    return sum(p.stat().st_size for p in (_store() / "packs").rglob("*.pack"))


def _gc(*extra: str) -> dict[str, object]:
    done = subprocess.run(
        [*CLI, "gc", "--grace", "0", "--json", *extra],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    report: dict[str, object] = json.loads(done.stdout)
    return report


def _check_clean(tmp_path: Path, keep: dict[str, bytes]) -> None:
    done = subprocess.run(
        [*CLI, "check", "--read-data", "--json"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["unindexed_packs"] == 0
    reset_backends()
    out = Path(cairn.Api("p").artifact("p/keep:latest").download(tmp_path / "out"))
    assert {p.name: p.read_bytes() for p in out.iterdir()} == keep


def _delete_all_but_keep() -> None:
    api = cairn.Api("p")
    for art in api.artifacts():
        if art.name == "keep":
            continue
        for version in api.artifact_versions(art.name):
            version.delete()


@pytest.mark.slow
def test_logs_killed_mid_way_leave_nothing_gc_cannot_reclaim(tmp_path: Path) -> None:
    rnd = random.Random(11)
    kills = 0
    for i in range(5):
        folder = tmp_path / f"src{i}"
        _folder(folder, rnd, files=8, size=1_500_000)  # 12 MB: sealed packs, then the index
        before = _pack_count()
        proc = subprocess.Popen(
            [sys.executable, "-c", LOGGER, str(folder), f"killed{i}"], env=dict(os.environ)
        )
        # killed once it has sealed a seeded number of its ~6 packs (an event, not a time, so
        # the kill lands mid-way however fast the machine is)
        sealed = rnd.randint(1, 3)
        deadline = time.monotonic() + 120
        while proc.poll() is None and _pack_count() < before + sealed:
            if time.monotonic() > deadline:
                break
            time.sleep(0.005)
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            kills += 1
        proc.wait(timeout=120)
    assert kills >= 4  # every log is killed mid-way, barring one that sealed its last packs at once
    grown = _pack_bytes() + sum(p.stat().st_size for p in (_store() / "tmp").iterdir())
    keep = _folder(tmp_path / "keep", rnd, files=4, size=300_000)
    _log("keep", tmp_path / "keep")
    reset_backends()
    _delete_all_but_keep()  # a log that finished before its kill made a version: not wanted
    reset_backends()
    report = _gc()
    print(f"{kills} logs killed; store {grown} bytes before gc, gc: {report}")
    assert list((_store() / "tmp").iterdir()) == []
    live = sum(len(d) for d in keep.values())
    # what is left is the live version (plus the trees and the packs' footers)
    assert live <= _pack_bytes() <= live + 64_000
    _check_clean(tmp_path, keep)


@pytest.mark.slow
def test_a_gc_killed_between_dropping_and_deleting_packs_is_recovered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(local, "PACK_TARGET", 1 << 20)
    rnd = random.Random(12)
    for i in range(3):
        _folder(tmp_path / f"dead{i}", rnd, files=3, size=1_000_000)
        _log(f"dead{i}", tmp_path / f"dead{i}")
    keep = _folder(tmp_path / "keep", rnd, files=3, size=400_000)
    _log("keep", tmp_path / "keep")
    reset_backends()
    _delete_all_but_keep()
    reset_backends()
    before = _rows()
    gc = subprocess.Popen(
        [*CLI, "gc", "--grace", "0"], env=dict(os.environ), stdout=subprocess.DEVNULL
    )
    # kill it the moment it has dropped the dead packs' rows, before it deletes the packs
    deadline = time.monotonic() + 120
    while _rows() == before and gc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert gc.poll() is None, "gc finished before it could be killed"
    os.kill(gc.pid, signal.SIGKILL)
    gc.wait(timeout=60)
    dead = sum(
        p.stat().st_size
        for p in (_store() / "packs").rglob("*.pack")
        if p.name not in _indexed_packs()
    )
    assert dead >= 3_000_000  # the killed gc left the dropped packs on disk, unindexed
    report = _gc()
    assert report["orphan_packs_removed"] >= 1
    live = sum(len(d) for d in keep.values())
    assert live <= _pack_bytes() <= live + 64_000
    _check_clean(tmp_path, keep)


def _rows() -> int:
    db = sqlite3.connect(f"file:{_store() / 'index.db'}?mode=ro", uri=True, timeout=30)
    try:
        return int(db.execute("SELECT count(*) FROM objects").fetchone()[0])
    finally:
        db.close()


def _indexed_packs() -> set[str]:
    db = sqlite3.connect(f"file:{_store() / 'index.db'}?mode=ro", uri=True, timeout=30)
    try:
        return {p for (p,) in db.execute("SELECT DISTINCT pack FROM objects")}
    finally:
        db.close()
