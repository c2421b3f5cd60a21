"""`cairn artifact ls|versions|show|files|history` and `cairn projects`: what a user reads,
and the same facts as JSON, checked against the SDK."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli_helpers import Invoke

import cairn


def test_ls(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    out = cli("artifact", "ls", "demo").stdout.splitlines()
    assert out[0].split() == ["NAME", "TYPE", "VERSIONS", "LATEST", "SIZE", "UPDATED"]
    assert out[1].split()[:5] == ["data", "dataset", "2", "v1", "9"]
    assert out[2].split()[:5] == ["model", "model", "1", "v0", "7"]
    assert out[3].split()[:5] == ["report", "evaluation", "1", "v0", "2"]
    listed = cli_json("artifact", "ls", "--project", "demo")
    sdk = cairn.Api("demo").artifacts()
    assert [(a["name"], a["latest"], a["type"]) for a in listed] == [
        (a.name, a.version, a.type) for a in sdk
    ]
    assert [a["qualified_name"] for a in listed] == [a.qualified_name for a in sdk]
    models = cli_json("artifact", "ls", "demo", "--type", "model")
    assert [a["name"] for a in models] == ["model"]
    assert "No artifacts of type 'nope'" in cli("artifact", "ls", "demo", "-t", "nope").stdout


def test_versions(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    lines = cli("artifact", "versions", "demo/data").stdout.splitlines()
    assert lines[0].split()[:3] == ["VERSION", "ALIASES", "TAGS"]
    assert lines[1].startswith("v1") and "latest" in lines[1]
    assert lines[2].startswith("v0") and "stable" in lines[2]
    listed = cli_json("artifact", "versions", "data", "-p", "demo")
    sdk = cairn.Api("demo").artifact_versions("data")
    assert [v["label"] for v in listed] == [a.version for a in sdk] == ["v1", "v0"]
    assert [v["digest"] for v in listed] == [a.digest for a in sdk]
    assert [v["aliases"] for v in listed] == [a.aliases for a in sdk]
    assert listed[0]["run_id"] == sdk[0].logged_by().id


def test_show(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    out = cli("artifact", "show", "demo/data:v1").stdout
    sdk = cairn.Api("demo").artifact("data:v1")
    logged_by = sdk.logged_by()
    assert logged_by is not None
    assert "demo/data:v1  (dataset)" in out
    assert sdk.digest in out
    assert "9 B in 3 files" in out
    assert f"logged by  {logged_by.name} ({logged_by.id}, create)" in out
    assert "training" in out  # used by the training run
    assert "rows  3" in out
    for path in ("a.csv", "c.csv", "sub/b.csv"):
        assert path in out
    data = cli_json("artifact", "show", "data:v1", "-p", "demo")
    sdk = cairn.Api("demo").artifact("data:v1")  # the CLI closed the previous backend
    assert data["qualified_name"] == sdk.qualified_name
    assert data["metadata"] == sdk.metadata == {"rows": 3}
    assert data["logged_by"]["id"] == logged_by.id
    assert [r["id"] for r in data["used_by"]] == [r.id for r in sdk.used_by()]
    assert [f["path"] for f in data["files"]] == [f.path for f in sdk.files()]
    assert [f["digest"] for f in data["files"]] == [f.digest for f in sdk.files()]
    few = cli("artifact", "show", "demo/data:v1", "--files", "1").stdout
    assert "... and 2 more: cairn artifact files demo/data:v1" in few


def test_show_defaults_to_latest_and_resolves_aliases(
    cli_json: Callable[..., Any], store: Path
) -> None:
    assert cli_json("artifact", "show", "demo/data")["label"] == "v1"
    assert cli_json("artifact", "show", "demo/data:stable")["label"] == "v0"


def test_files(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    lines = cli("artifact", "files", "demo/data:v1").stdout.splitlines()
    assert [ln.split()[-1] for ln in lines] == ["a.csv", "c.csv", "sub/b.csv"]
    assert lines[1].split()[:2] == ["4", "B"]
    listed = cli_json("artifact", "files", "demo/data:v1", "sub")
    assert listed == [
        {"path": f.path, "size": f.size, "digest": f.digest}
        for f in cairn.Api("demo").artifact("data:v1").files("sub")
    ]
    result = cli("artifact", "files", "demo/data:v1", "nope", code=3)
    assert result.stderr == "error: demo/data:v1 has no file or folder 'nope'\n"


def test_history(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    cli("artifact", "alias", "add", "demo/data:v0", "best")
    cli("artifact", "tag", "add", "demo/data:v0", "gold")
    out = cli("artifact", "history", "demo/data:v0").stdout
    assert "created v0" in out
    assert "aliases: +best (now: best, stable)" in out
    assert "tags: +gold (now: gold)" in out
    entries = cli_json("artifact", "history", "demo/data:v0")
    sdk = cairn.Api("demo").artifact("data:v0").history()
    assert [e["field"] for e in entries] == [e.field for e in sdk] == ["created", "aliases", "tags"]
    assert entries[1]["new"] == sdk[1].new


def test_projects(cli: Invoke, cli_json: Callable[..., Any], store: Path) -> None:
    assert cli("projects").stdout.splitlines()[1].split()[:3] == ["demo", "3", "4"]
    listed = cli_json("projects")
    assert [(p["name"], p["artifact_count"], p["run_count"]) for p in listed] == [
        (p.name, p.artifact_count, p.run_count) for p in cairn.Api().projects()
    ]


def test_empty_store(cli: Invoke, cli_json: Callable[..., Any]) -> None:
    assert "No projects yet" in cli("projects").stdout
    assert cli_json("projects") == []
    result = cli("artifact", "ls", code=3)
    assert result.stderr.startswith("error: ") and "default" in result.stderr
