"""`cairn runs ls|show`."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn
from cairn.sdk.backend import get_backend


def test_runs_ls(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    lines = cli("runs", "ls", "demo").stdout.splitlines()
    assert lines[0].split() == ["ID", "NAME", "JOB", "TYPE", "STATE", "STARTED", "DURATION"]
    assert len(lines) == 5
    assert "evaluation" in lines[1] and "finished" in lines[1]  # newest first
    listed = cli_json("runs", "ls", "--project", "demo")
    sdk = cairn.Api("demo").runs()
    assert [r["id"] for r in listed] == [r.id for r in sdk]
    assert [r["job_type"] for r in listed] == ["evaluation", "training", "create", "create"]
    training = cli_json("runs", "ls", "demo", "--job-type", "training")
    assert [r["job_type"] for r in training] == ["training"]
    assert "No runs of job type 'nope'" in cli("runs", "ls", "demo", "-j", "nope").stdout


def test_runs_show(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    run = cairn.Api("demo").runs(job_type="evaluation")[0]
    out = cli("runs", "show", run.id).stdout
    assert f"run {run.name} ({run.id})  project demo" in out
    assert "state       finished" in out
    assert f"host        {run.info.host}" in out
    assert "inputs (2)" in out and "demo/model:v0" in out and "demo/data:v0" in out
    assert "outputs (1)" in out and "demo/report:v0" in out
    data = cli_json("runs", "show", run.id)
    run = cairn.Api("demo").run(run.id)
    assert data["state"] == run.state == "finished"
    assert data["config"] == run.config
    assert data["git_commit"] == run.info.git_commit
    assert [v["qualified_name"] for v in data["inputs"]] == [
        a.qualified_name for a in run.used_artifacts()
    ]
    assert [v["qualified_name"] for v in data["outputs"]] == ["demo/report:v0"]


def test_runs_show_config_and_summary(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    with cairn.init(project="p", job_type="train", config={"lr": 0.1}) as run:
        run.log({"loss": 0.5})
    out = cli("runs", "show", run.id).stdout
    assert "config\n  lr  0.1\n" in out
    assert "summary\n  loss  0.5\n" in out
    assert cli_json("runs", "show", run.id)["summary"] == {"loss": 0.5}


def test_runs_show_unknown(cli: Invoke) -> None:
    result = cli("runs", "show", "nosuchrun", code=3)
    assert result.stderr.startswith("error: ")
    assert result.stderr.count("\n") == 1


def test_runs_ls_by_state_shows_a_silent_run_as_crashed(
    cli: Invoke, cli_json: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    with cairn.init(project="p", job_type="train"):
        pass
    # a run whose process died right after starting it: it never sends a heartbeat
    silent = get_backend().registry.create_run("p", job_type="train")
    try:
        assert [r["id"] for r in cli_json("runs", "ls", "p", "--state", "running")] == [silent.id]
        monkeypatch.setenv("CAIRN_RUN_TIMEOUT_SECONDS", "0.2")
        time.sleep(0.5)
        crashed = cli_json("runs", "ls", "p", "--state", "crashed")
        assert [(r["id"], r["state"]) for r in crashed] == [(silent.id, "crashed")]
        assert cli_json("runs", "ls", "p", "-s", "running") == []
        assert len(cli_json("runs", "ls", "p", "-s", "finished")) == 1
        assert "No runs in state running" in cli("runs", "ls", "p", "-s", "running").stdout
        cli("runs", "ls", "p", "--state", "sleeping", code=2)
    finally:
        get_backend().registry.update_run(silent.id, state="finished")


def test_runs_show_says_why_a_run_failed(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    with pytest.raises(ValueError), cairn.init(project="f", job_type="train") as run:
        raise ValueError("loss is NaN at step 300")
    out = cli("runs", "show", run.id).stdout
    assert "state       failed (ValueError: loss is NaN at step 300)" in out
    assert cli_json("runs", "show", run.id)["failure"] == "ValueError: loss is NaN at step 300"
