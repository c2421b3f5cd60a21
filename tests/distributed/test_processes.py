"""`cairn.distributed` on worker processes of this machine (``engine="processes"``, the standard
library's process pool, two workers), embedded and through a server: the same cases as on Dask
and Ray, and a worker that dies mid-shard."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from tests.distributed import engine_cases

import cairn
import cairn.distributed
from cairn.errors import InvalidInputError, MissingPartsError

pytestmark = pytest.mark.parametrize("backend_mode", ["sqlite", "postgres", "remote"])


@pytest.fixture
def two() -> dict[str, Any]:
    return {"engine": cairn.distributed.processes_engine(2)}


def test_log_dir_on_processes_equals_one_process(tmp_path: Path, two: dict[str, Any]) -> None:
    engine_cases.log_dir_equals_single_process(tmp_path, two)


def test_files_and_references_on_processes(tmp_path: Path, two: dict[str, Any]) -> None:
    engine_cases.files_and_references(tmp_path, two)


def test_many_shards_on_processes_are_cut_as_they_are_wanted(
    tmp_path: Path, two: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    engine_cases.many_shards_are_cut_as_the_engine_asks(tmp_path, two, monkeypatch)


def test_a_failing_stream_of_calls_on_processes_runs_nothing_more(
    tmp_path: Path, two: dict[str, Any]
) -> None:
    engine_cases.a_failing_stream_of_calls_cancels_what_it_submitted(
        tmp_path, two, task=engine_cases.sleep_then_mark
    )


def test_conflicting_paths_on_processes(tmp_path: Path, two: dict[str, Any]) -> None:
    engine_cases.conflicting_paths_are_named(tmp_path, two)


def die_on_second(i: int, marks: str) -> int:
    """A task whose second call kills its worker process (as the kernel's OOM killer would)."""
    if i == 1:
        os._exit(9)
    Path(marks, f"done-{i}").touch()
    return i


def test_a_worker_that_dies_is_a_clear_error_and_commits_nothing(
    tmp_path: Path, two: dict[str, Any]
) -> None:
    engine = two["engine"]
    with pytest.raises(MissingPartsError, match=r"worker process stopped.*Run the same log again"):
        for _ in engine.map(die_on_second, [(i, str(tmp_path)) for i in range(2)]):
            pass
    folder = engine_cases.make_folder(tmp_path)
    with cairn.init(project="p") as run:
        # the same engine runs the next map on new processes
        art = cairn.distributed.log_dir(folder, "data", shards=3, distributed_id="d-1", **two)
        assert art.file_count == 32 and art.version == "v0"
        assert run.artifact_parts("data", "d-1") == []


def test_the_engine_is_picked_by_name_and_checks_its_workers(backend_mode: str) -> None:
    engine = cairn.distributed.pick_engine(engine="processes")
    assert engine.name == "processes" and engine.workers() == len(os.sched_getaffinity(0))
    assert cairn.distributed.processes_engine(3).workers() == 3
    with pytest.raises(InvalidInputError, match="workers must be 1 or more"):
        cairn.distributed.processes_engine(0)
    with pytest.raises(InvalidInputError, match="'dask', 'ray' or 'processes'"):
        cairn.distributed.pick_engine(engine="threads")
