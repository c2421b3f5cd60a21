"""Fixtures for the SDK tests: every test runs embedded on SQLite and on PostgreSQL, and remote
(through a real server, on PostgreSQL, with an API key), with a fresh store (CAIRN_DIR from
tests/conftest.py) and a fresh backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends


@pytest.fixture(params=["sqlite", "postgres", "remote"])
def backend_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def database_url(backend_mode: str, request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if backend_mode == "sqlite":
        return f"sqlite:///{tmp_path / 'meta.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(autouse=True)
def sdk_env(
    cairn_env: Path, database_url: str, backend_mode: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Path]:
    """Point the SDK at this test's database and store, and start with no cached backend and
    no current run. Remote: a server (uvicorn in a thread) on the database, whose store is the
    folder the embedded mode would use, and CAIRN_URL/CAIRN_API_KEY pointing at it."""
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    reset_backends()
    server = None
    if backend_mode == "remote":
        from cairn.server.deps import ServerSettings
        from cairn.server.testing import ServerThread

        server = ServerThread(ServerSettings(database_url, cairn_env / "store")).start()
        accounts = server.app.state.services.accounts
        accounts.create_user("tester", admin=True)
        monkeypatch.setenv("CAIRN_URL", server.url)
        monkeypatch.setenv("CAIRN_API_KEY", accounts.create_key("tester")[1])
    yield cairn_env
    run_context._current = None
    reset_backends()
    if server is not None:
        server.stop()
