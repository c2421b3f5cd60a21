"""What a W&B user's artifact code relies on (issue 15): aliases set on a draft, `latest` in
the aliases asked for, and the other behaviours W&B documents for its public SDK."""

from __future__ import annotations

from pathlib import Path

import pytest
from sdk_helpers import write

import cairn
from cairn.errors import InvalidNameError


def _draft(tmp_path: Path, content: str = "rows", name: str = "ds") -> cairn.Artifact:
    art = cairn.Artifact(name, type="dataset")
    art.add_file(write(tmp_path / "src" / f"{content}.txt", content), name="data.txt")
    return art


def test_aliases_set_on_a_draft_are_applied(tmp_path: Path) -> None:
    art = _draft(tmp_path)
    art.aliases = ["best"]
    art.aliases.append("candidate")
    art.tags = ["raw"]
    with cairn.init(project="proj") as run:
        run.log_artifact(art, aliases=["prod"])
    assert art.aliases == ["latest", "best", "candidate", "prod"]
    assert cairn.Api("proj").artifact("ds:best").version == "v0"
    assert cairn.Api("proj").artifact("ds:candidate").tags == ["raw"]
    assert cairn.Api("proj").artifact("ds:prod").version == "v0"


def test_a_bad_alias_on_a_draft_is_refused_before_anything_is_logged(tmp_path: Path) -> None:
    art = _draft(tmp_path)
    art.aliases = ["v3"]
    with cairn.init(project="proj") as run, pytest.raises(InvalidNameError, match="'v3'"):
        run.log_artifact(art)
    assert art.is_draft
    assert cairn.Api("proj").projects() == [] or cairn.Api("proj").artifacts() == []


def test_latest_is_accepted_in_the_aliases(tmp_path: Path) -> None:
    with cairn.init(project="proj") as run:
        first = run.log_artifact(_draft(tmp_path, "one"), aliases=["latest", "best"])
        assert first.aliases == ["latest", "best"]
        second = _draft(tmp_path, "two")
        second.aliases = ["latest"]
        run.log_artifact(second, aliases=["latest"])
    assert second.aliases == ["latest"]
    assert cairn.Api("proj").artifact("ds:latest").version == "v1"
    assert cairn.Api("proj").artifact("ds:best").version == "v0"
    assert cairn.Api("proj").artifact("ds:v0").aliases == ["best"]
