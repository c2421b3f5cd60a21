"""`cairn lineage`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from cli_helpers import Invoke

import cairn


def test_lineage_both_directions(cli: Invoke, store: Path) -> None:
    out = cli("lineage", "demo/model:v0").stdout
    lines = out.splitlines()
    assert lines[0] == "model:v0 (model)"
    assert "upstream (what it came from)" in lines[1]
    up_run = cairn.Api("demo").artifact("model:v0").logged_by()
    assert up_run is not None
    assert f"run {up_run.name} [{up_run.id}] training" in out
    assert "data:v1 (dataset)" in out
    assert "downstream (what used it)" in out
    assert "report:v0 (evaluation)" in out


def test_lineage_up_is_a_tree(cli: Invoke, store: Path) -> None:
    lines = cli("lineage", "demo/report:v0", "--up").stdout.splitlines()
    assert lines[0] == "report:v0 (evaluation)"
    assert "run" in lines[1] and "evaluation" in lines[1]
    # the evaluation run used model:v0 and data:v0; model:v0 came from data:v1
    text = "\n".join(lines)
    assert "data:v0 (dataset)" in text
    assert "model:v0 (model)" in text
    assert "data:v1 (dataset)" in text
    assert "downstream" not in text
    indent = {ln.split("── ")[-1].split(" ")[0]: len(ln) - len(ln.lstrip("│├└─ ")) for ln in lines}
    assert indent["model:v0"] < indent["data:v1"]


def test_lineage_down_depth(cli: Invoke, store: Path) -> None:
    out = cli("lineage", "demo/data:v1", "--down", "--depth", "1").stdout
    assert "training" in out
    assert "model:v0" not in out
    deeper = cli("lineage", "demo/data:v1", "--down").stdout
    assert "model:v0" in deeper and "report:v0" in deeper


def test_lineage_json_matches_sdk(cli_json: Callable[..., Any], store: Path) -> None:
    data = cli_json("lineage", "demo/model:v0", "--up")
    graph = cairn.Api("demo").lineage("model:v0", direction="up")
    assert data == graph.to_dict()
    assert data["root"] == f"version:{cairn.Api('demo').artifact('model:v0').id}"


def test_lineage_flags_exclude_each_other(cli: Invoke, store: Path) -> None:
    result = cli("lineage", "demo/data:v1", "--up", "--down", code=2)
    assert result.stderr == "error: --up and --down exclude each other; give neither to see both\n"
