"""Runs and metrics, on SQLite and PostgreSQL."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

import pytest

from cairn.core.records import RunInfo
from cairn.errors import (
    InvalidInputError,
    InvalidMetadataError,
    InvalidNameError,
    RunFinishedError,
    RunNotFoundError,
)
from cairn.service.sql import SqlRegistry


def test_create_run_defaults_and_fields(registry: SqlRegistry) -> None:
    run = registry.create_run(
        "proj",
        job_type="train",
        config={"lr": 0.001, "layers": [64, 64], "opt": {"name": "adam"}},
        tags=["baseline", "gpu"],
        notes="first try",
        host="box-1",
        python_version="3.11.7",
        git_commit="abc123",
        git_dirty=True,
        git_diff_digest="blake3:" + "0" * 64,
    )
    assert re.fullmatch(r"[0-9a-z]{8}", run.id)
    assert re.fullmatch(r"[a-z]+-[a-z]+-1", run.name)
    assert (run.project, run.job_type, run.state) == ("proj", "train", "running")
    assert run.config == {"lr": 0.001, "layers": [64, 64], "opt": {"name": "adam"}}
    assert list(run.config) == ["lr", "layers", "opt"]  # key order is kept
    assert run.tags == ["baseline", "gpu"]
    assert (run.notes, run.host, run.python_version) == ("first try", "box-1", "3.11.7")
    assert (run.git_commit, run.git_dirty, run.git_diff_digest) == (
        "abc123",
        True,
        "blake3:" + "0" * 64,
    )
    assert run.finished_at is None and run.summary == {}
    assert run.started_at.utcoffset() == timedelta(0)
    assert abs((datetime.now(UTC) - run.started_at).total_seconds()) < 60
    assert registry.get_run(run.id) == run
    assert RunInfo.from_dict(run.to_dict()) == run


def test_generated_names_are_unique_in_the_project(registry: SqlRegistry) -> None:
    names = [registry.create_run("proj").name for _ in range(12)]
    assert len(set(names)) == 12
    assert [int(n.rsplit("-", 1)[1]) for n in names] == list(range(1, 13))
    assert registry.create_run("proj", name="my run").name == "my run"
    assert registry.create_run("other").name.endswith("-1")


def test_invalid_run_input_is_rejected(registry: SqlRegistry) -> None:
    with pytest.raises(InvalidNameError):
        registry.create_run("bad/project")
    with pytest.raises(InvalidNameError):
        registry.create_run("proj", name="")
    with pytest.raises(InvalidNameError):
        registry.create_run("proj", tags=["bad tag"])
    with pytest.raises(InvalidMetadataError, match=r"config\['lr'\]"):
        registry.create_run("proj", config={"lr": math.nan})
    with pytest.raises(InvalidMetadataError, match=r"config\['when'\]"):
        registry.create_run("proj", config={"when": datetime.now()})
    assert registry.list_projects() == []


def test_finishing_a_run_sets_finished_at_and_freezes_it(registry: SqlRegistry) -> None:
    run = registry.create_run("proj", config={"a": 1})
    done = registry.update_run(run.id, state="finished", summary={"acc": 0.9})
    assert done.state == "finished" and done.summary == {"acc": 0.9}
    assert done.finished_at is not None and done.finished_at >= done.started_at

    with pytest.raises(RunFinishedError, match="already finished"):
        registry.update_run(run.id, state="failed")
    with pytest.raises(RunFinishedError, match="config"):
        registry.update_run(run.id, config={"a": 2})
    with pytest.raises(RunFinishedError, match="metrics"):
        registry.log_metrics(run.id, [(1, {"loss": 0.1})])

    # summary, notes and tags may still change; repeating the final state is harmless
    later = registry.update_run(
        run.id, state="finished", summary={"acc": 0.95}, notes="n", tags=["keep"]
    )
    assert (later.summary, later.notes, later.tags) == ({"acc": 0.95}, "n", ["keep"])
    assert later.finished_at == done.finished_at
    assert registry.get_run(run.id) == later


@pytest.mark.parametrize("final", ["failed", "crashed"])
def test_failed_and_crashed_runs_are_finished_too(registry: SqlRegistry, final: str) -> None:
    run = registry.create_run("proj")
    registry.update_run(run.id, state=final)  # type: ignore[arg-type]
    with pytest.raises(RunFinishedError):
        registry.update_run(run.id, state="running")
    with pytest.raises(RunFinishedError):
        registry.log_metrics(run.id, [(0, {"x": 1})])


def test_update_run_validates(registry: SqlRegistry) -> None:
    run = registry.create_run("proj")
    with pytest.raises(InvalidInputError, match="running, finished, failed, crashed"):
        registry.update_run(run.id, state="done")  # type: ignore[arg-type]
    with pytest.raises(InvalidMetadataError, match=r"summary\['x'\]"):
        registry.update_run(run.id, summary={"x": math.inf})
    with pytest.raises(RunNotFoundError):
        registry.update_run("nosuchid", notes="x")
    assert registry.get_run(run.id).state == "running"


def test_metrics_are_stored_in_step_order(registry: SqlRegistry) -> None:
    run = registry.create_run("proj")
    registry.log_metrics(run.id, [(0, {"loss": 1.0}), (2, {"loss": 0.5, "acc": 0.7})])
    registry.log_metrics(run.id, [(1, {"loss": 0.8, "lr": [0.1, 0.2]})])
    registry.log_metrics(run.id, [])
    rows = registry.run_metrics(run.id)
    assert [(r.step, r.data) for r in rows] == [
        (0, {"loss": 1.0}),
        (1, {"loss": 0.8, "lr": [0.1, 0.2]}),
        (2, {"loss": 0.5, "acc": 0.7}),
    ]
    assert all(r.at.tzinfo is not None for r in rows)


def test_non_finite_metrics_round_trip(registry: SqlRegistry) -> None:
    run = registry.create_run("proj")
    registry.log_metrics(run.id, [(0, {"loss": math.nan, "hi": math.inf, "lo": -math.inf})])
    [row] = registry.run_metrics(run.id)
    assert math.isnan(row.data["loss"])
    assert row.data["hi"] == math.inf and row.data["lo"] == -math.inf


def test_bad_metrics_are_rejected_naming_the_key(registry: SqlRegistry) -> None:
    run = registry.create_run("proj")
    with pytest.raises(InvalidMetadataError, match=r"\['weights'\]"):
        registry.log_metrics(run.id, [(0, {"ok": 1}), (1, {"weights": object()})])
    with pytest.raises(InvalidInputError):
        registry.log_metrics(run.id, [("one", {"x": 1})])  # type: ignore[list-item]
    assert registry.run_metrics(run.id) == []  # nothing of a rejected batch is stored
    with pytest.raises(RunNotFoundError):
        registry.log_metrics("nosuchid", [(0, {"x": 1})])
    with pytest.raises(RunNotFoundError):
        registry.run_metrics("nosuchid")


def test_list_runs_newest_first_with_filters_and_paging(registry: SqlRegistry) -> None:
    runs = [registry.create_run("proj", job_type="train" if i % 2 else "eval") for i in range(5)]
    registry.create_run("elsewhere")
    registry.update_run(runs[1].id, state="finished")
    newest_first = [r.id for r in reversed(runs)]
    assert [r.id for r in registry.list_runs("proj")] == newest_first
    assert [r.id for r in registry.list_runs("proj", limit=2, offset=1)] == newest_first[1:3]
    assert [r.id for r in registry.list_runs("proj", job_type="train")] == [
        runs[3].id,
        runs[1].id,
    ]
    assert [r.id for r in registry.list_runs("proj", state="finished")] == [runs[1].id]
    assert [r.id for r in registry.list_runs("proj", job_type="eval", state="finished")] == []
    with pytest.raises(InvalidInputError):
        registry.list_runs("proj", offset=-1)


def test_get_unknown_run(registry: SqlRegistry) -> None:
    with pytest.raises(RunNotFoundError, match="'abcdefgh'"):
        registry.get_run("abcdefgh")
