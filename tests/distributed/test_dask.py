"""`cairn.distributed` on a real Dask `LocalCluster` (two worker processes), embedded and
through a server whose store is an S3 bucket (the workers upload on signed URLs)."""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tests.conftest import require
from tests.distributed import engine_cases

pytestmark = pytest.mark.parametrize("backend_mode", ["sqlite", "postgres", "remote-bucket"])


@pytest.fixture(scope="module")
def dask_client() -> Iterator[Any]:
    require(
        importlib.util.find_spec("distributed") is not None,
        "dask[distributed] is not installed (pip install 'cairn[dask]')",
    )
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = Client(cluster)
    yield client
    client.close()
    cluster.close()


def test_log_dir_on_dask_equals_one_process(tmp_path: Path, dask_client: Any) -> None:
    engine_cases.log_dir_equals_single_process(tmp_path, {"client": dask_client})


def test_files_and_references_on_dask(tmp_path: Path, dask_client: Any) -> None:
    engine_cases.files_and_references(tmp_path, {"client": dask_client})


def test_many_shards_on_dask_are_cut_as_they_are_wanted(
    tmp_path: Path, dask_client: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_cases.many_shards_are_cut_as_the_engine_asks(
        tmp_path, {"client": dask_client}, monkeypatch
    )


def test_a_failing_stream_of_calls_on_dask_cancels_what_waits(
    tmp_path: Path, dask_client: Any
) -> None:
    engine_cases.a_failing_stream_of_calls_cancels_what_it_submitted(
        tmp_path, {"client": dask_client}
    )


def test_conflicting_paths_on_dask(tmp_path: Path, dask_client: Any) -> None:
    engine_cases.conflicting_paths_are_named(tmp_path, {"client": dask_client})


def test_the_current_client_is_used(tmp_path: Path, dask_client: Any) -> None:
    import cairn
    import cairn.distributed

    assert cairn.distributed.pick_engine().name == "dask"  # the client made above is current
    folder = engine_cases.make_folder(tmp_path)
    with cairn.init(project="p"):
        art = cairn.distributed.log_dir(folder, shards=2)
    assert art.name == "dataset" and art.file_count == 32
