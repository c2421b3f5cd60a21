"""Runs: init, log, summary, finish, what a run records, and the git state of the code.

Tests of what the SDK does (states, git state, steps, heartbeats) run on SQLite and remote
(`SQLITE_AND_REMOTE`); each theme keeps a test on embedded PostgreSQL too."""

from __future__ import annotations

import platform
import signal
import socket
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import pytest
from sdk_helpers import SQLITE_AND_REMOTE

import cairn
from cairn.errors import ArtifactNotFoundError, RunFinishedError
from cairn.sdk.backend import get_backend


def test_init_log_summary_finish_records_everything() -> None:
    before = datetime.now().astimezone()
    run = cairn.init(
        project="proj",
        job_type="training",
        name="first-run",
        config={"lr": 0.1, "layers": [64, 32]},
        tags=["baseline", "cpu"],
        notes="trying the small model",
    )
    assert cairn.current_run() is run
    assert run.state == "running"
    run.log({"loss": 1.0})
    cairn.log({"loss": 0.5, "acc": 0.75})
    run.log({"acc": 0.8}, step=5)
    run.summary["best_acc"] = 0.8
    run.finish()
    assert cairn.current_run() is None
    assert run.state == "finished"

    stored = cairn.Api().run(run.id)
    info = stored.info
    assert (info.project, info.name, info.job_type) == ("proj", "first-run", "training")
    assert info.config == {"lr": 0.1, "layers": [64, 32]}
    assert info.tags == ["baseline", "cpu"]
    assert info.notes == "trying the small model"
    assert info.state == "finished"
    assert info.host == socket.gethostname()
    assert info.python_version == platform.python_version()
    assert info.finished_at is not None
    assert before <= info.started_at <= info.finished_at <= datetime.now().astimezone()
    assert info.summary == {"loss": 0.5, "acc": 0.8, "best_acc": 0.8}
    assert stored.metrics() == [
        {"_step": 0, "loss": 1.0},
        {"_step": 1, "loss": 0.5, "acc": 0.75},
        {"_step": 5, "acc": 0.8},
    ]
    # finishing twice is harmless and changes nothing
    run.finish()
    assert cairn.Api().run(run.id).info.finished_at == info.finished_at


def test_many_runs_looked_up_at_once() -> None:
    """A page naming many runs (the dashboard's versions list) gets them in one call: each
    run's record from its own project, ids of no run left out, duplicates once."""
    a = cairn.init(project="proj", job_type="prep", name="a-run")
    a.finish()
    b = cairn.init(project="other", job_type="train", name="b-run")
    b.finish()
    registry = get_backend().registry
    found = registry.get_runs([a.id, b.id, "nosuchrun", a.id])
    assert sorted(found) == sorted([a.id, b.id])
    assert (found[a.id].project, found[a.id].name, found[a.id].job_type) == (
        "proj",
        "a-run",
        "prep",
    )
    assert (found[b.id].project, found[b.id].state) == ("other", "finished")
    assert found[b.id] == registry.get_run(b.id)
    assert registry.get_runs([]) == {}


@SQLITE_AND_REMOTE
def test_config_changed_during_the_run_is_saved_at_finish() -> None:
    run = cairn.init(project="proj", config={"lr": 0.1})
    run.config["epochs"] = 3
    run.finish()
    assert cairn.Api().run(run.id).info.config == {"lr": 0.1, "epochs": 3}


@SQLITE_AND_REMOTE
def test_default_project_and_generated_name(monkeypatch: pytest.MonkeyPatch) -> None:
    run = cairn.init()
    assert run.project == "default"
    assert run.name and run.name == cairn.Api().run(run.id).name
    run.finish()
    monkeypatch.setenv("CAIRN_PROJECT", "from-env")
    run = cairn.init()
    assert run.project == "from-env"
    run.finish()
    assert [p.name for p in cairn.Api().projects()] == ["default", "from-env"]


@SQLITE_AND_REMOTE
def test_with_block_marks_the_run_finished() -> None:
    with cairn.init(project="proj", job_type="eval") as run:
        run.log({"x": 1})
        assert cairn.Api().run(run.id).state == "running"
    info = cairn.Api().run(run.id).info
    assert info.state == "finished"
    assert info.finished_at is not None
    assert info.summary == {"x": 1}
    assert cairn.current_run() is None


@SQLITE_AND_REMOTE
def test_exception_in_with_block_marks_the_run_failed() -> None:
    with pytest.raises(ZeroDivisionError), cairn.init(project="proj") as run:
        run.log({"loss": 2.0})
        _ = 1 / 0
    info = cairn.Api().run(run.id).info
    assert info.state == "failed"
    assert info.failure == "ZeroDivisionError: division by zero"
    assert info.finished_at is not None
    assert info.summary == {"loss": 2.0}
    assert cairn.Api().run(run.id).metrics() == [{"_step": 0, "loss": 2.0}]


@SQLITE_AND_REMOTE
def test_ctrl_c_in_with_block_marks_the_run_crashed() -> None:
    with pytest.raises(KeyboardInterrupt), cairn.init(project="proj") as run:
        raise KeyboardInterrupt
    read = cairn.Api().run(run.id)
    assert read.state == "crashed"
    assert read.failure == "KeyboardInterrupt (interrupted, e.g. Ctrl-C)"


def test_a_failed_run_records_the_exception_a_finished_one_nothing() -> None:
    class ShapeError(Exception):
        pass

    with pytest.raises(ShapeError), cairn.init(project="proj") as run:
        raise ShapeError("expected (32, 3, 224, 224), got (32, 224, 224)")
    assert cairn.Api().run(run.id).failure == (
        f"{__name__}.test_a_failed_run_records_the_exception_a_finished_one_nothing.<locals>."
        "ShapeError: expected (32, 3, 224, 224), got (32, 224, 224)"
    )
    with cairn.init(project="proj") as ok:
        pass
    assert cairn.Api().run(ok.id).failure is None
    assert cairn.Api().run(ok.id).state == "finished"


@SQLITE_AND_REMOTE
def test_an_uncaught_exception_outside_a_with_block_is_recorded(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(
        "import cairn\n"
        "run = cairn.init(project='proj', job_type='train')\n"
        "print(run.id, flush=True)\n"
        "raise RuntimeError('CUDA out of memory')\n"
    )
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1 and "CUDA out of memory" in done.stderr
    read = cairn.Api().run(done.stdout.strip())
    assert read.state == "failed"
    assert read.failure == "RuntimeError: CUDA out of memory"


@SQLITE_AND_REMOTE
def test_a_new_init_finishes_the_previous_run() -> None:
    first = cairn.init(project="proj")
    second = cairn.init(project="proj")
    assert cairn.Api().run(first.id).state == "finished"
    assert cairn.current_run() is second
    with pytest.raises(RunFinishedError):
        first.log({"x": 1})
    second.finish()


def test_api_lists_runs_newest_first_and_by_job_type() -> None:
    ids = []
    for job in ("prep", "train", "train"):
        with cairn.init(project="proj", job_type=job) as run:
            ids.append(run.id)
    api = cairn.Api()
    assert [r.id for r in api.runs("proj")] == ids[::-1]
    assert [r.id for r in api.runs("proj", job_type="train")] == ids[:0:-1]
    assert api.run(ids[0]).job_type == "prep"


@SQLITE_AND_REMOTE
def test_outside_a_git_repo_no_code_version_is_recorded() -> None:
    with cairn.init(project="proj") as run:
        pass
    info = cairn.Api().run(run.id).info
    assert (info.git_commit, info.git_dirty, info.git_diff_digest) == (None, None, None)


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-c", "user.name=Test", "-c", "user.email=test@example.com", *args],
        cwd=repo,
        check=True,
        capture_output=True,
        text=True,
    )
    return out.stdout.strip()


def test_inside_a_git_repo_commit_dirty_flag_and_diff_are_recorded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "train.py").write_text("print('hello')\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    head = _git(repo, "rev-parse", "HEAD")
    monkeypatch.chdir(repo)

    with cairn.init(project="proj") as clean:
        pass
    info = cairn.Api().run(clean.id).info
    assert info.git_commit == head
    assert info.git_dirty is False
    assert info.git_diff_digest is None

    (repo / "train.py").write_text("print('hello, world')\n")
    with cairn.init(project="proj") as dirty:
        pass
    info = cairn.Api().run(dirty.id).info
    assert info.git_commit == head
    assert info.git_dirty is True
    assert info.git_diff_digest is not None
    diff = get_backend().object_store.get(info.git_diff_digest).decode()
    assert diff == _git(repo, "diff", "HEAD") + "\n"
    assert "-print('hello')" in diff
    assert "+print('hello, world')" in diff


@SQLITE_AND_REMOTE
def test_save_code_false_records_no_git_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    (repo / "a.txt").write_text("a\n")
    _git(repo, "add", "a.txt")
    _git(repo, "commit", "-q", "-m", "first")
    monkeypatch.chdir(repo)
    with cairn.init(project="proj", save_code=False) as run:
        pass
    assert cairn.Api().run(run.id).info.git_commit is None


@SQLITE_AND_REMOTE
def test_finish_with_a_non_zero_exit_code_marks_the_run_failed() -> None:
    run = cairn.init(project="proj")
    cairn.finish(exit_code=1)
    assert cairn.Api().run(run.id).state == "failed"
    assert cairn.Api().run(run.id).failure == "exit code 1"
    assert cairn.current_run() is None
    cairn.finish()  # no current run: nothing to do


def test_metrics_are_flushed_in_batches_and_read_back_in_step_order() -> None:
    with cairn.init(project="proj") as run:
        for i in range(450):
            run.log({"i": i, "half": i / 2})
        # more than one batch was written while the run was going
        assert len(cairn.Api().run(run.id).metrics()) >= 400
    rows = cairn.Api().run(run.id).metrics()
    assert rows == [{"_step": i, "i": i, "half": i / 2} for i in range(450)]
    assert cairn.Api().run(run.id).info.summary == {"i": 449, "half": 224.5}


@SQLITE_AND_REMOTE
def test_steps_may_not_go_back() -> None:
    with cairn.init(project="proj") as run:
        run.log({"a": 1}, step=3)
        with pytest.raises(cairn.errors.InvalidInputError, match="before the last logged step"):
            run.log({"a": 2}, step=1)
        run.log({"a": 3})
    assert [r["_step"] for r in run.metrics()] == [3, 4]


@SQLITE_AND_REMOTE
def test_a_run_read_back_from_the_registry_is_read_only() -> None:
    run = cairn.init(project="proj")
    view = cairn.Api().run(run.id)
    assert view.state == "running"
    with pytest.raises(RunFinishedError, match="only the process that started it"):
        view.log({"x": 1})
    # adding lineage to a run read back is allowed (W&B does it); the name must exist
    with pytest.raises(ArtifactNotFoundError):
        view.use_artifact("anything")
    view.finish()  # does nothing to the real run
    assert cairn.Api().run(run.id).state == "running"
    run.finish()
    assert cairn.Api().run(run.id).state == "finished"


@SQLITE_AND_REMOTE
def test_a_diverging_loss_is_logged_and_the_run_still_finishes() -> None:
    run = cairn.init(project="proj", job_type="training")
    run.log({"loss": 0.5})
    run.log({"loss": float("nan"), "grad_norm": float("inf")})
    run.finish()
    assert run.state == "finished"
    rows = cairn.Api("proj").run(run.id).metrics()
    assert rows[0]["loss"] == 0.5
    assert rows[1]["loss"] != rows[1]["loss"]  # NaN
    assert rows[1]["grad_norm"] == float("inf")
    stored = cairn.Api("proj").run(run.id).summary
    assert stored["loss"] == "NaN"
    assert stored["grad_norm"] == "Infinity"


def _start_a_run_that_hangs(tmp_path: Path) -> tuple[subprocess.Popen[str], str]:
    """A script that starts a run and then never finishes it (until it is killed)."""
    script = tmp_path / "train.py"
    script.write_text(
        "import time, cairn\n"
        "run = cairn.init(project='proj', job_type='train', save_code=False)\n"
        "print(run.id, flush=True)\n"
        "time.sleep(120)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, str(script)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    run_id = proc.stdout.readline().strip()
    assert run_id, proc.stderr.read() if proc.stderr else ""
    return proc, run_id


@SQLITE_AND_REMOTE
def test_a_killed_run_is_reported_crashed_once_its_heartbeat_stops(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_HEARTBEAT_SECONDS", "0.2")
    monkeypatch.setenv("CAIRN_RUN_TIMEOUT_SECONDS", "1.5")
    proc, run_id = _start_a_run_that_hangs(tmp_path)
    try:
        api = cairn.Api("proj")
        time.sleep(2.5)  # longer than the timeout: only the heartbeats keep it running
        assert api.run(run_id).state == "running"
        assert [r.id for r in api.runs(state="running")] == [run_id]
        assert api.runs(state="crashed") == []
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        deadline = time.monotonic() + 20
        while api.run(run_id).state == "running" and time.monotonic() < deadline:
            time.sleep(0.2)
        crashed = api.run(run_id)
        assert crashed.state == "crashed"
        assert crashed.info.heartbeat_at is not None
        assert [r.id for r in api.runs(state="crashed")] == [run_id]
        assert api.runs(state="running") == []
    finally:
        proc.kill()
        proc.communicate(timeout=30)


def test_a_run_that_was_only_stalled_can_still_finish(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_HEARTBEAT_SECONDS", "60")  # no beat during this test
    monkeypatch.setenv("CAIRN_RUN_TIMEOUT_SECONDS", "0.5")
    run = cairn.init(project="proj", job_type="train", save_code=False)
    time.sleep(1.0)
    assert cairn.Api("proj").run(run.id).state == "crashed"
    run.log({"loss": 0.5})
    run.summary["loss"] = 0.5
    run.finish()
    stored = cairn.Api("proj").run(run.id)
    assert stored.state == "finished"
    assert stored.summary == {"loss": 0.5}
