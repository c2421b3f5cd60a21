"""`cairn pin` and `cairn.lock`: code in a repository keeps the versions it was pinned to."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from cli_helpers import Invoke

import cairn
from cairn.errors import ConflictError, InvalidInputError
from cairn.sdk.backend import reset_backends


def _use(ref: str) -> str:
    reset_backends()
    with cairn.init(project="default", job_type="train") as run:
        return run.use_artifact(ref).version


def test_pin_holds_use_artifact_until_update(
    cli: Invoke, folder: Callable[..., Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    (repo / ".git").mkdir(parents=True)
    (repo / "src").mkdir()
    monkeypatch.chdir(repo / "src")  # the lock goes to the repository's root, not here
    data = folder("data", {"a.csv": "1\n"})
    cli("push", str(data))
    out = cli("pin", "data", "--json").stdout
    pins = json.loads(out)["pins"]
    assert list(pins) == ["default/data:latest"]
    assert pins["default/data:latest"]["version"] == "v0"
    assert (repo / "cairn.lock").is_file() and not (repo / "src" / "cairn.lock").exists()

    (data / "a.csv").write_text("2\n")
    cli("push", str(data))
    assert cairn.Api().artifact("data:latest").version == "v1"
    assert _use("data:latest") == "v0"  # the pin wins over the moved alias
    assert _use("data:v1") == "v1"  # an explicit version is never redirected
    run = cairn.Api().runs()[0]
    assert [a.version for a in run.used_artifacts()] == ["v1"]

    moved = json.loads(cli("pin", "--update", "--json").stdout)
    assert moved["changed"] == ["default/data:latest"]
    assert moved["pins"]["default/data:latest"]["version"] == "v1"
    assert _use("data:latest") == "v1"


def test_pin_list_remove_and_lock_switched_off(
    cli: Invoke, folder: Callable[..., Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    data = folder("data", {"a.csv": "1\n"})
    cli("push", str(data), "--alias", "best")
    cli("pin", "data:best")
    listing = cli("pin").stdout
    assert "default/data:best" in listing and "v0" in listing
    (data / "a.csv").write_text("2\n")
    cli("push", str(data), "--alias", "best")
    assert _use("data:best") == "v0"
    monkeypatch.setenv("CAIRN_LOCK", "off")
    assert _use("data:best") == "v1"
    monkeypatch.delenv("CAIRN_LOCK")
    cli("pin", "--remove", "data:best")
    assert _use("data:best") == "v1"
    missing = cli("pin", "--remove", "data:best", code=3)
    assert "has no pin default/data:best" in missing.stderr


def test_pin_refuses_fixed_versions_and_unknown_names(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    cli("push", str(folder("data", {"a.csv": "1\n"})))
    assert "names a fixed version already" in cli("pin", "data:v0", code=2).stderr
    assert cli("pin", "nope:latest", code=3).stderr.startswith("error: ")
    assert not Path("cairn.lock").exists()


@pytest.mark.embedded_only("the lock file and its checks are client-side; one backend suffices")
def test_a_pin_from_another_store_or_a_damaged_lock_is_refused(
    cli: Invoke, folder: Callable[..., Path]
) -> None:
    cli("push", str(folder("data", {"a.csv": "1\n"})))
    cli("pin", "data")
    lock = Path("cairn.lock")
    body = json.loads(lock.read_text())
    body["pins"]["default/data:latest"]["digest"] = "blake3:" + "0" * 64
    lock.write_text(json.dumps(body))
    with pytest.raises(ConflictError, match="not the one the pin was made against"):
        _use("data:latest")
    lock.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a readable Cairn lock file"):
        _use("data:latest")
