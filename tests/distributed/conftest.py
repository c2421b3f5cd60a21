"""Fixtures for distributed versions: every test runs on each way the SDK reaches its data
(embedded on SQLite and PostgreSQL, through a server, through a server on an S3 bucket with
signed URLs), and the Dask and Ray tests share one local cluster per module."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import s3_service

import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends

__all__ = ["s3_service"]

MODES = ["sqlite", "postgres", "remote", "remote-bucket"]


@pytest.fixture(params=MODES)
def backend_mode(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(autouse=True)
def sdk_env(
    cairn_env: Path,
    backend_mode: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    if backend_mode == "sqlite":
        database_url = f"sqlite:///{tmp_path / 'meta.db'}"
    else:
        database_url = request.getfixturevalue("postgres_url")
    bucket_url = None
    if backend_mode == "remote-bucket":
        service = request.getfixturevalue("s3_service")
        bucket_url = f"s3://{service.bucket()}/cairn"
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    reset_backends()
    server = None
    if backend_mode.startswith("remote"):
        from cairn.server.deps import ServerSettings
        from cairn.server.testing import ServerThread

        settings = ServerSettings(database_url, cairn_env / "store", store_url=bucket_url)
        server = ServerThread(settings).start()
        accounts = server.app.state.services.accounts
        accounts.create_user("tester", admin=True)
        monkeypatch.setenv("CAIRN_URL", server.url)
        monkeypatch.setenv("CAIRN_API_KEY", accounts.create_key("tester")[1])
    yield cairn_env
    run_context._current = None
    reset_backends()
    if server is not None:
        server.stop()
