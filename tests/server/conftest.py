"""Fixtures for the server tests: a real uvicorn server on 127.0.0.1 (in a thread, or in its
own process) over the real PostgreSQL, and clients that talk to it over HTTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from server_helpers import Raw

import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts


@pytest.fixture(autouse=True)
def _fresh_sdk(cairn_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    reset_backends()
    yield
    run_context._current = None
    reset_backends()


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> ServerSettings:
    return ServerSettings(database_url=postgres_url, store=tmp_path / "server-store")


@pytest.fixture
def server(settings: ServerSettings) -> Iterator[ServerThread]:
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def accounts(server: ServerThread) -> Accounts:
    """The server's accounts, managed directly (as `cairn server ...` commands do)."""
    found: Accounts = server.app.state.services.accounts
    return found


@pytest.fixture
def raw(server: ServerThread) -> Callable[[str | None], Raw]:
    """``raw(key)``: a plain HTTP client of the server's API with that key (or none)."""
    clients: list[Raw] = []

    def make(key: str | None = None) -> Raw:
        client = Raw(server.url, key)
        clients.append(client)
        return client

    yield make  # type: ignore[misc]
    for c in clients:
        c.close()


@pytest.fixture
def use_server(
    server: ServerThread, monkeypatch: pytest.MonkeyPatch
) -> Callable[[str | None], None]:
    """``use_server(key)``: point the SDK at the server with that key."""

    def point(key: str | None = None) -> None:
        monkeypatch.setenv("CAIRN_URL", server.url)
        if key:
            monkeypatch.setenv("CAIRN_API_KEY", key)
        else:
            monkeypatch.delenv("CAIRN_API_KEY", raising=False)
        monkeypatch.setattr(run_context, "_current", None)
        reset_backends()

    return point
