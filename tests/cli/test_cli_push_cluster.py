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
