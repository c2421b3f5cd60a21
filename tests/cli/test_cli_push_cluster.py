"""`cairn push --dask ADDRESS` / `--ray ADDRESS` / `--workers N`: a folder logged by the workers
of a real local cluster, or by worker processes of this machine, is the version one process
makes."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cli_helpers import Invoke
from tests.conftest import require

import cairn


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    require(
        importlib.util.find_spec("distributed") is not None,
        "dask[distributed] is not installed (pip install 'cairn[dask]')",
    )
    from distributed import LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    yield str(cluster.scheduler_address)
    cluster.close()


def _rows(n: int) -> dict[str, str]:
    return {f"split-{i % 3}/{i:03}.txt": f"row {i}\n" * (i + 1) for i in range(n)}


def test_push_on_a_dask_cluster_is_the_version_one_process_makes(
    cli: Invoke, folder: Callable[..., Path], dask_address: str
) -> None:
    data = folder("data", _rows(40))
    single = json.loads(cli("push", str(data), "--name", "single", "--json").stdout)
    args = ["--dask", dask_address, "--shards", "3", "--alias", "best", "-m", "rows=40"]
    args += ["--description", "forty rows"]
    out = json.loads(cli("push", str(data), *args, "--tag", "raw", "--json").stdout)
    version = out["version"]
    assert out["created"] is True
    assert version["digest"] == single["version"]["digest"]
    assert version["file_count"] == 40 and version["qualified_name"] == "default/data:v0"
    assert "best" in version["aliases"] and version["tags"] == ["raw"]
    assert version["metadata"] == {"rows": 40} and version["description"] == "forty rows"
    art = cairn.Api().artifact("data:best")
    producer = art.logged_by()
    assert producer is not None and producer.job_type == "push" and producer.id == out["run_id"]
    assert sorted(f.path for f in art.files())[:2] == ["split-0/000.txt", "split-0/003.txt"]
    # the same folder again: no new version, said as for a push without a cluster
    again = cli("push", str(data), "--dask", dask_address)
    assert "Nothing changed" in again.stdout and "default/data:v0" in again.stdout
    (data / "split-1" / "001.txt").write_text("changed\n")
    assert "Pushed default/data:v1" in cli("push", str(data), "--dask", dask_address).stdout


@pytest.mark.embedded_only("checks the arguments before any backend is reached")
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dask", "tcp://127.0.0.1:1", "--ray", "auto"], "one of --dask, --ray, not several"),
        (["--ray", "auto", "--workers", "2"], "one of --ray, --workers, not several"),
        (["--shards", "4"], "--shards goes with --dask, --ray or --workers"),
    ],
)
def test_cluster_options_are_checked(
    cli: Invoke, folder: Callable[..., Path], args: list[str], message: str
) -> None:
    data = folder("data", {"a": "1"})
    result = cli("push", str(data), *args, code=2)
    assert message in result.stderr
    two = cli("push", str(data / "a"), str(data), "--dask", "tcp://127.0.0.1:1", code=2)
    assert "--dask logs one folder" in two.stderr
    assert cairn.Api().projects() == []  # nothing was logged


def test_push_with_worker_processes_is_the_version_one_process_makes(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    data = folder("data", _rows(40))
    single = json.loads(cli("push", str(data), "--name", "single", "--json").stdout)
    args = ["--workers", "2", "--shards", "3", "--alias", "best", "--json"]
    out = json.loads(cli("push", str(data), *args).stdout)
    assert out["created"] is True and out["version"]["qualified_name"] == "default/data:v0"
    assert out["version"]["digest"] == single["version"]["digest"]
    assert out["version"]["file_count"] == 40 and "best" in out["version"]["aliases"]
    assert out["stats"]["files"] == 40  # the workers' counts, summed
    # one worker per core (-j 0), the same folder: no new version
    again = cli("push", str(data), "-j", "0")
    assert "Nothing changed" in again.stdout and "default/data:v0" in again.stdout
    two = cli("push", str(data), str(data), "--workers", "2", code=2)
    assert "--workers logs one folder" in two.stderr


def test_a_first_log_of_a_big_folder_uses_worker_processes_by_default(
    cli: Invoke, folder: Callable[..., Path], monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    from cairn.cli import push

    monkeypatch.setattr(push, "AUTO_WORKERS_FILES", 30)  # as 100,000 files
    data = folder("data", _rows(40))
    first = cli("push", str(data), "--json")
    out = json.loads(first.stdout)
    assert out["created"] is True
    if backend == "server":  # a server's own work bounds a log through it: one process
        assert out["engine"] == "single"
        return
    assert out["engine"] == "processes"
    assert out["stats"]["files"] == 40 and out["version"]["file_count"] == 40
    # a re-log stays in this process, where unchanged folders are taken whole
    (data / "split-1" / "001.txt").write_text("changed\n")
    again = json.loads(cli("push", str(data), "--json").stdout)
    assert again["engine"] == "single" and again["version"]["version"] == 1
    # a person is told, and --workers 1 keeps the log in this process
    told = cli("push", str(data), "--name", "other")
    assert "using worker processes, one per core (--workers 1" in told.stderr
    alone = json.loads(cli("push", str(data), "-n", "third", "-j", "1", "--json").stdout)
    assert alone["engine"] == "single"
    assert alone["version"]["digest"] == again["version"]["digest"]
    small = folder("small", _rows(20))  # below the size
    assert json.loads(cli("push", str(small), "--json").stdout)["engine"] == "single"


def _running_in_group(group: int, wait: float = 5.0) -> list[str]:
    """The processes of a process group still running after up to ``wait`` seconds (the
    dead ones not yet reaped do not count): pid and command line."""
    import time

    deadline = time.monotonic() + wait
    while True:
        found = []
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                command = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ")
            except OSError:
                continue  # ended meanwhile
            if int(fields[2]) == group and fields[0] != "Z":
                found.append(f"{stat.parent.name} {command.decode(errors='replace')}")
        if not found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


@pytest.mark.embedded_only("reads the embedded database to see a shard stored")
def test_ctrl_c_stops_the_workers_commits_nothing_and_the_next_push_goes_on(
    tmp_path: Path,
) -> None:
    import os
    import signal
    import sqlite3
    import subprocess
    import sys
    import time

    data = tmp_path / "data"
    for i in range(40_000):  # eight shards of 5,000: two workers need a few seconds
        if i % 1000 == 0:
            (data / f"d{i // 1000:03}").mkdir(parents=True)
        (data / f"d{i // 1000:03}" / f"{i}.txt").write_bytes(b"row %d\n" % i * (i % 5 + 1))
    database = Path(os.environ["CAIRN_DIR"]) / "cairn.db"

    def parts_stored() -> int:
        try:
            with sqlite3.connect(database) as db:
                return int(db.execute("SELECT count(*) FROM artifact_parts").fetchone()[0])
        except sqlite3.OperationalError:  # not made yet
            return 0

    cairn_cli = [sys.executable, "-c", "from cairn.cli.main import main; main()"]
    push = subprocess.Popen(
        [*cairn_cli, "push", str(data), "--name", "big", "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group, as a terminal's foreground job
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 60
    while not parts_stored() and time.monotonic() < deadline:
        time.sleep(0.01)  # until a worker has stored a shard
    os.killpg(push.pid, signal.SIGINT)  # Ctrl-C reaches the whole foreground group
    _, err = push.communicate(timeout=60)
    assert push.returncode == 130, err.decode()
    assert "interrupted: what was stored or downloaded so far is kept" in err.decode()
    assert _running_in_group(push.pid) == []  # no worker left behind
    assert cairn.Api().artifacts(type="dataset") == []  # nothing committed
    again = subprocess.run(
        [*cairn_cli, "push", str(data), "--name", "big", "-j", "2", "--json"],
        capture_output=True,
    )
    assert again.returncode == 0, again.stderr.decode()
    out = json.loads(again.stdout)
    assert out["created"] is True and out["version"]["file_count"] == 40_000
    assert out["stats"]["hashed_files"] <= 35_000  # the stopped push's shards were kept
    assert out["stats"]["new_objects"] < 40_000


@pytest.mark.embedded_only("starts a Ray cluster of its own (seconds); the Dask test covers both")
def test_push_on_a_local_ray_cluster(cli: Invoke, folder: Callable[..., Path]) -> None:
    require(importlib.util.find_spec("ray") is not None, "ray is not installed")
    import ray

    data = folder("data", _rows(12))
    single = json.loads(cli("push", str(data), "--name", "single", "--json").stdout)
    out = json.loads(cli("push", str(data), "--ray", "local", "--json").stdout)
    assert out["created"] is True and out["version"]["file_count"] == 12
    assert out["version"]["digest"] == single["version"]["digest"]
    assert not ray.is_initialized()  # the cluster the push started is shut down
    # (inside a process already in a Ray cluster: tests/distributed/test_ray.py)
