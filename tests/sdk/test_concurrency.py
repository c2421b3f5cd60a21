"""Several processes logging at once, and logs that are killed or interrupted half-way."""

from __future__ import annotations

import json
import multiprocessing
import os
import queue
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sdk_helpers import (
    log_worker,
    referenced_objects,
    store_bytes,
    stored_objects,
    tree_of,
)

import cairn
from cairn.errors import ArtifactNotFoundError
from cairn.sdk.backend import get_backend

pytestmark = pytest.mark.slow

WORKERS = 4
LOGS = 3


def test_processes_logging_one_artifact_get_distinct_consecutive_versions(
    tmp_path: Path,
) -> None:
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Queue()
    results = ctx.Queue()
    start = ctx.Event()
    procs = [
        ctx.Process(target=log_worker, args=(w, LOGS, str(tmp_path / "src"), ready, start, results))
        for w in range(WORKERS)
    ]
    for p in procs:
        p.start()
    try:
        for _ in procs:
            try:
                ready.get(timeout=120)  # every process has imported Cairn and started its run
            except queue.Empty:
                failed = [results.get(timeout=1) for _ in range(results.qsize())]
                pytest.fail(f"a worker did not start its run within 120 s: {failed}")
        start.set()
        outcomes = dict(results.get(timeout=120) for _ in procs)
    finally:
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.kill()
    for worker, outcome in outcomes.items():
        assert isinstance(outcome, list), f"worker {worker} failed:\n{outcome}"
    assert [p.exitcode for p in procs] == [0] * WORKERS

    logged = [entry for outcome in outcomes.values() for entry in outcome]
    labels = sorted((version for version, _, _ in logged), key=lambda v: int(v[1:]))
    assert labels == [f"v{i}" for i in range(WORKERS * LOGS)]

    api = cairn.Api("proj")
    versions = api.artifact_versions("shared")
    assert [v.version for v in versions] == labels[::-1]
    for version, content, run_id in logged:
        art = api.artifact(f"shared:{version}")
        assert Path(art.file(root=tmp_path / "dl" / version)).read_text() == content
        creator = art.logged_by()
        assert creator is not None and creator.id == run_id
    # each worker's own versions are in the order it logged them
    for outcome in outcomes.values():
        numbers = [int(v[1:]) for v, _, _ in outcome]
        assert numbers == sorted(numbers)


LOG_SCRIPT = """
import signal
import sys
import time
import cairn
from cairn.objects import ingest

# Ctrl-C as in a terminal, even when the tests were started in the background (a shell's '&'
# starts them with SIGINT ignored, which the logger would inherit)
signal.signal(signal.SIGINT, signal.default_int_handler)

# each file opened a little late: the log lasts seconds, so the signal the test sends once the
# first objects are stored lands half-way even on a loaded machine
opened = ingest._open
ingest._open = lambda path: (time.sleep(0.02), opened(path))[1]

run = cairn.init(project="proj", job_type="interrupted")
art = cairn.Artifact("big", type="dataset")
art.add_dir(sys.argv[1])
run.log_artifact(art)
print("logged", art.version, flush=True)
"""


def _big_dataset(root: Path) -> Path:
    rng = random.Random(64)
    for i in range(200):
        (root / f"part-{i // 50}").mkdir(parents=True, exist_ok=True)
        (root / f"part-{i // 50}" / f"{i:03}.bin").write_bytes(rng.randbytes(4096 + i))
    (root / "weights.bin").write_bytes(os.urandom(64 << 20))
    return root


def _start_logging(tmp_path: Path, data: Path) -> subprocess.Popen[str]:
    script = tmp_path / "log_big.py"
    script.write_text(LOG_SCRIPT)
    return subprocess.Popen(
        [sys.executable, str(script), str(data)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_until_objects_are_written(proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while store_bytes() == 0:
        assert proc.poll() is None, f"the logger ended early:\n{proc.communicate()}"
        assert time.monotonic() < deadline, "the logger never wrote an object"
        time.sleep(0.001)


def _log_again_and_check(data: Path, tmp_path: Path) -> None:
    with cairn.init(project="proj", job_type="retry") as run:
        art = cairn.Artifact("big", type="dataset")
        art.add_dir(data)
        run.log_artifact(art)
    assert art.version == "v0"
    assert art.file_count == 201
    object_store = get_backend().object_store
    referenced = referenced_objects(art.digest, object_store.get)
    assert referenced <= stored_objects()
    for digest in referenced:
        object_store.get(digest, verify=True)  # present and intact
    root = art.download(root=tmp_path / "dl")
    assert tree_of(root) == tree_of(data)


def test_a_log_killed_half_way_leaves_nothing_the_next_log_trips_on(tmp_path: Path) -> None:
    data = _big_dataset(tmp_path / "data")
    proc = _start_logging(tmp_path, data)
    try:
        _wait_until_objects_are_written(proc)
        proc.send_signal(signal.SIGKILL)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (out, err)
    assert "logged" not in out
    with pytest.raises(ArtifactNotFoundError):
        cairn.Api("proj").artifact("big:latest")

    _log_again_and_check(data, tmp_path)


def test_ctrl_c_half_way_records_no_version_and_marks_the_run(tmp_path: Path) -> None:
    data = _big_dataset(tmp_path / "data")
    proc = _start_logging(tmp_path, data)
    try:
        _wait_until_objects_are_written(proc)
        proc.send_signal(signal.SIGINT)
    finally:
        out, err = proc.communicate(timeout=60)
    assert proc.returncode != 0, (out, err)
    assert "KeyboardInterrupt" in err
    assert "logged" not in out
    with pytest.raises(ArtifactNotFoundError):
        cairn.Api("proj").artifact("big:latest")
    (run,) = cairn.Api("proj").runs()
    assert run.state == "crashed"
    assert run.info.finished_at is not None

    _log_again_and_check(data, tmp_path)


FORK_SCRIPT = """
import json
import json
import multiprocessing
import os
import sys
from pathlib import Path

import cairn

folder = Path(sys.argv[1])


def work(i):
    path = folder / f"w{i}.txt"
    path.write_text(f"worker {i}\\n" * 100)
    art = cairn.Artifact("shared", type="dataset")
    art.add_file(path, name="data.txt")
    cairn.log_artifact(art)  # to the run the worker inherited
    cairn.Api("proj").artifact("shared:v0").download(root=folder / f"dl-{i}")
    return art.version


if __name__ == "__main__":
    run = cairn.init(project="proj", job_type="parent")
    (folder / "seed.txt").write_text("seed")
    run.log_artifact(folder / "seed.txt", name="shared")  # connections are open before forking
    with multiprocessing.get_context("fork").Pool(3) as pool:
        versions = pool.map(work, range(6))
    pid = os.fork()
    if pid == 0:
        sys.exit(0)  # a child that exits normally runs the exit handlers
    os.waitpid(pid, 0)
    after_child = cairn.Api("proj").run(run.id).state
    (folder / "last.txt").write_text("last")
    last = run.log_artifact(folder / "last.txt", name="shared")
    run.finish()
    print(json.dumps({"run": run.id, "versions": versions, "after_child": after_child,
                      "last": last.version}))
"""


def test_forked_workers_log_through_their_own_connections(tmp_path: Path) -> None:
    script = tmp_path / "fork_workers.py"
    script.write_text(FORK_SCRIPT)
    work = tmp_path / "fork-work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, str(script), str(work)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result["versions"], key=lambda v: int(v[1:])) == [f"v{i}" for i in range(1, 7)]
    assert result["after_child"] == "running"  # the child left the parent's run alone
    assert result["last"] == "v7"
    api = cairn.Api("proj")
    assert api.run(result["run"]).state == "finished"
    assert [r.id for r in api.runs()] == [result["run"]]
    for i in range(6):
        assert tree_of(work / f"dl-{i}") == {"seed.txt": b"seed"}
    contents = {api.artifact(f"shared:{v}").file(root=tmp_path / v) for v in result["versions"]}
    assert {Path(p).read_text() for p in contents} == {f"worker {i}\n" * 100 for i in range(6)}
