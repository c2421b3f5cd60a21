"""`cairn cache` on a client of a server: the download cache's size, its limit
(CAIRN_CACHE_MAX) and the evictions a capped download made; bad limits are refused with an
error naming the variable."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke

import cairn
from cairn.sdk.backend import reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread

pytestmark = pytest.mark.embedded_only("starts its own server; the cache is a client's")

GIB = 1 << 30


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}", store=tmp_path / "server-store"
    )
    with ServerThread(settings) as running:
        yield running


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("50GB", 50 * 10**9),
        ("500MiB", 500 << 20),
        ("1.5 GiB", 3 * (1 << 29)),
        ("123456", 123456),
        ("0", None),
        ("none", None),
    ],
)
def test_the_limit_from_cairn_cache_max(
    cli_json: Callable[..., Any], monkeypatch: pytest.MonkeyPatch, value: str, expected: int | None
) -> None:
    monkeypatch.setenv("CAIRN_CACHE_MAX", value)
    data = cli_json("cache")
    assert data["limit_bytes"] == expected
    assert data["limit"] == f"CAIRN_CACHE_MAX={value}"


def test_a_share_of_the_disk_and_the_default(
    cli_json: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAIRN_CACHE_MAX", "10%")
    data = cli_json("cache")
    assert data["limit_bytes"] == data["disk_bytes"] // 10
    monkeypatch.delenv("CAIRN_CACHE_MAX")
    data = cli_json("cache")
    assert data["limit"].startswith("default: 10% of the disk")
    assert data["limit_bytes"] == min(max(data["disk_bytes"] // 10, 5 * GIB), 200 * GIB)


@pytest.mark.parametrize("value", ["lots", "-5GB", "10 parsecs", "0%", "150%"])
def test_a_bad_limit_is_refused_naming_the_variable(
    cli: Invoke,
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    value: str,
) -> None:
    monkeypatch.setenv("CAIRN_CACHE_MAX", value)
    result = cli("cache", code=None)
    assert result.exit_code != 0
    assert "CAIRN_CACHE_MAX" in result.stderr and repr(value) in result.stderr
    # a download through the server says the same, before fetching anything
    monkeypatch.setenv("CAIRN_URL", server.url)
    result = cli("artifact", "get", "p/ds:v0", "--root", str(tmp_path / "out"), code=None)
    assert result.exit_code != 0
    assert "CAIRN_CACHE_MAX" in result.stderr


def test_cache_shows_size_limit_and_evictions(
    cli: Invoke,
    cli_json: Callable[..., Any],
    server: ServerThread,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    monkeypatch.setenv("CAIRN_URL", server.url)
    monkeypatch.setenv("CAIRN_CACHE_MAX", "2MB")
    rnd = random.Random(9)
    data = tmp_path / "data"
    data.mkdir()
    for i in range(12):
        (data / f"f{i}.bin").write_bytes(rnd.randbytes(400_000))
    with cairn.init(project="p", job_type="t") as run:
        art = cairn.Artifact("ds", type="dataset")
        art.add_dir(data)
        run.log_artifact(art)
    reset_backends()
    cli("artifact", "get", "p/ds:v0", "--root", str(tmp_path / "out"))
    for f in data.iterdir():
        assert (tmp_path / "out" / f.name).read_bytes() == f.read_bytes()

    status = cli_json("cache")
    assert 0 < status["bytes"] <= 2_000_000
    assert status["limit_bytes"] == 2_000_000
    assert status["evictions"], "the download evicted"
    newest = status["evictions"][0]
    assert newest["reason"] == "download" and newest["bytes"] > 0
    assert newest["size_after"] <= 2_000_000
    assert status["evicted_bytes"] >= 4_800_000 - 2_000_000 - (1 << 20)

    out = cli("cache").stdout
    assert "limit           2.0 MB" in out and "CAIRN_CACHE_MAX=2MB" in out
    assert "download" in out  # the eviction table

    # `cairn cache clean` evicts the rest, and logs it too
    cli("cache", "clean", "--max-size", "0")
    status = cli_json("cache")
    assert status["bytes"] == 0
    assert status["evictions"][0]["reason"] == "clean"
    # the info subcommand still works
    assert cli_json("cache", "info")["files"]["bytes"] == 0
