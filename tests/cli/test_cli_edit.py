"""`cairn artifact alias|tag|rm`."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import Invoke

import cairn


def test_alias_add_moves_and_rm(cli: Invoke, store: Path) -> None:
    out = cli("artifact", "alias", "add", "demo/data:v1", "stable").stdout
    assert out == "demo/data:v1 now has alias 'stable' (moved from v0).\n"
    assert cairn.Api("demo").artifact("data:stable").version == "v1"
    again = cli("artifact", "alias", "add", "demo/data:v1", "stable").stdout
    assert "already has alias 'stable'" in again
    out = cli("artifact", "alias", "rm", "demo/data:v1", "stable").stdout
    assert out == "Removed alias 'stable' from demo/data:v1.\n"
    assert cairn.Api("demo").artifact("data:v1").aliases == ["latest"]
    missing = cli("artifact", "alias", "rm", "demo/data:v1", "stable", code=3)
    assert missing.stderr == "error: demo/data:v1 has no alias 'stable'; its aliases: -\n"


def test_alias_latest_is_refused(cli: Invoke, store: Path) -> None:
    result = cli("artifact", "alias", "add", "demo/data:v0", "latest", code=2)
    assert "set by Cairn itself" in result.stderr


def test_tag_add_rm(cli: Invoke, store: Path) -> None:
    assert cli("artifact", "tag", "add", "demo/data:v0", "gold").stdout == (
        "Tagged demo/data:v0 with 'gold'.\n"
    )
    cli("artifact", "tag", "add", "demo/data:v1", "gold")
    assert cairn.Api("demo").artifact("data:v0").tags == ["gold"]
    assert cairn.Api("demo").artifact("data:v1").tags == ["gold"]
    cli("artifact", "tag", "rm", "demo/data:v0", "gold")
    assert cairn.Api("demo").artifact("data:v0").tags == []
    result = cli("artifact", "tag", "rm", "demo/data:v0", "gold", code=3)
    assert result.stderr.startswith("error: demo/data:v0 has no tag 'gold'")


def test_rm_refuses_aliased_version_unless_forced(cli: Invoke, store: Path) -> None:
    refused = cli("artifact", "rm", "demo/data:v0", code=1)
    assert refused.stderr.startswith("error: demo/data:v0 has aliases stable:")
    assert "--force" in refused.stderr
    assert [v.version for v in cairn.Api("demo").artifact_versions("data")] == ["v1", "v0"]
    out = cli("artifact", "rm", "demo/data:v0", "--force").stdout
    assert out == "Deleted demo/data:v0 and dropped its aliases stable.\n"
    assert [v.version for v in cairn.Api("demo").artifact_versions("data")] == ["v1"]
    gone = cli("artifact", "show", "demo/data:v0", code=3)
    assert "v0 was deleted" in gone.stderr


def test_rm_latest_without_aliases(cli: Invoke, store: Path) -> None:
    assert cli("artifact", "rm", "demo/data:v1").stdout == "Deleted demo/data:v1.\n"
    assert cairn.Api("demo").artifact("data:latest").version == "v0"


def test_rm_needs_an_explicit_version(cli: Invoke, store: Path) -> None:
    result = cli("artifact", "rm", "demo/data", code=2)
    assert result.stderr == ("error: give the version to act on, e.g. 'data:v0' or 'data:latest'\n")
    assert len(cairn.Api("demo").artifact_versions("data")) == 2
