"""Fixtures for the SDK tests: every test runs on SQLite and on PostgreSQL, with a fresh store
(CAIRN_DIR from tests/conftest.py) and a fresh backend."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

import cairn.sdk.run as run_module
from cairn.sdk.backend import reset_backends


@pytest.fixture(autouse=True)
def sdk_env(cairn_env: Path, database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point the SDK at this test's database and store, and start with no cached backend and
    no current run."""
    monkeypatch.setenv("CAIRN_DATABASE_URL", database_url)
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_module, "_current", None)
    reset_backends()
    yield cairn_env
    run_module._current = None
    reset_backends()
