"""`cairn registry`, `cairn link`, `cairn search`, `--where/--sort`, `--at` and
`cairn audit export`, embedded and through a server."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cli_helpers import Invoke

import cairn


def _log(tmp_path: Path, accs: list[float]) -> None:
    with cairn.init(project="vision") as run:
        for i, acc in enumerate(accs):
            art = cairn.Artifact("clf", type="model", metadata={"acc": acc})
            weights = tmp_path / f"w{i}"
            weights.write_text(str(i))
            art.add_file(weights)
            run.log_artifact(art, tags=["eval"] if acc > 0.9 else [])


def test_link_search_and_as_of(
    cli: Invoke, cli_json: Callable[..., Any], tmp_path: Path, backend: str
) -> None:
    _log(tmp_path, [0.8, 0.95, 0.91])
    cli("registry", "create", "models", "--protect", "production")
    cli("link", "vision/clf:v0", "models/classifier", "--alias", "production")
    time.sleep(0.05)
    before = datetime.now(UTC).isoformat()
    time.sleep(0.05)
    out = cli("link", "vision/clf:v1", "models/classifier", "--alias", "production").stdout
    assert "Linked vision/clf:v1 as models/classifier:v1" in out
    now = cli_json("artifact", "show", "models/classifier:production")
    assert now["qualified_name"] == "vision/clf:v1"
    then = cli_json("artifact", "show", "models/classifier:production", "--at", before)
    assert then["qualified_name"] == "vision/clf:v0"

    found = cli_json("search", "--where", "metadata.acc > 0.9", "--sort", "-metadata.acc")
    assert [v["qualified_name"] for v in found] == ["vision/clf:v1", "vision/clf:v2"]
    tagged = cli_json(
        "artifact", "versions", "vision/clf", "--where", 'tags in ["eval"]', "--sort", "version"
    )
    assert [v["label"] for v in tagged] == ["v1", "v2"]
    linked = cli_json("search", "--registry", "models", "--where", "aliases = production")
    assert [(x["target"]["name"], x["target"]["version"]) for x in linked] == [("clf", 1)]
    bad = cli("search", "--where", "metadata.acc >> 1", code=None)
    assert bad.exit_code != 0 and "cannot read the value" in bad.stderr
    history = cli("registry", "history", "models/classifier").stdout
    assert "alias production -> v0" in history and "alias production -> v1" in history
    cli("unlink", "models/classifier:v0")
    assert [x["version"] for x in cli_json("registry", "versions", "models/classifier")] == [1]


def test_audit_export_writes_json_lines(cli: Invoke, tmp_path: Path, backend: str) -> None:
    _log(tmp_path, [0.5])
    cli("registry", "create", "models")
    cli("link", "vision/clf:v0", "models/clf", "--alias", "staging")
    lines = cli("audit", "export").stdout.splitlines()
    entries = [json.loads(line) for line in lines]
    if backend == "embedded":
        assert entries == []  # the audit log records changes made on a server
        return
    assert [e["action"] for e in entries] == [
        "version.created",  # _log went through the server too
        "registry.create",
        "collection.link",
        "collection.alias",
    ]
    assert {e["user"] for e in entries} == {"tester"}
    assert all(e["address"] == "127.0.0.1" for e in entries)
    only = cli("audit", "export", "--action", "collection.").stdout.splitlines()
    assert len(only) == 2
