"""`cairn cache clean` on a client of a server: it empties the cache of downloaded objects
(packs and their index rows together), and the next download fetches them again."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Invoke

import cairn
from cairn.sdk.backend import reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread

pytestmark = pytest.mark.embedded_only("starts its own server")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ServerThread]:
    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}", store=tmp_path / "server-store"
    )
    with ServerThread(settings) as running:
        yield running


def _pack_bytes(home: Path) -> int:
    return sum(p.stat().st_size for p in (home / "cache" / "objects").rglob("*.pack"))


def test_clean_empties_downloaded_objects_and_downloads_still_work(
    cli: Invoke,
    server: ServerThread,
    cli_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("CAIRN_URL", server.url)
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"a" * 300_000)
    (data / "b.txt").write_text("hello")
    with cairn.init(project="p", job_type="t") as run:
        art = cairn.Artifact("ds", type="dataset")
        art.add_dir(data)
        run.log_artifact(art)
    reset_backends()
    first = Path(cairn.Api("p").artifact("ds:v0").download(root=tmp_path / "one"))
    assert (first / "a.bin").read_bytes() == b"a" * 300_000
    reset_backends()
    cached = _pack_bytes(cli_env)
    assert cached >= 300_000

    info = cli("cache", "info", "--json", code=0)
    assert '"bytes"' in info.stdout
    out = cli("cache", "clean", "--max-size", "0", code=0).stdout
    assert "Deleted" in out
    assert _pack_bytes(cli_env) == 0

    reset_backends()
    again = Path(cairn.Api("p").artifact("ds:v0").download(root=tmp_path / "two"))
    assert (again / "a.bin").read_bytes() == b"a" * 300_000
    assert (again / "b.txt").read_text() == "hello"
