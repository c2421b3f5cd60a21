"""Fixtures for the reference tests: the object storage emulators of tests/storage, a small
local web server, and a fresh SDK backend per test."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent.parent / "storage"))

from emulators import azure_service, gcs_service, s3_service
from web_server import WebServer

import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends

__all__ = ["azure_service", "gcs_service", "s3_service"]


@pytest.fixture(autouse=True)
def sdk_env(cairn_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    reset_backends()
    yield cairn_env
    run_context._current = None
    reset_backends()


@pytest.fixture
def web(tmp_path: Path) -> Iterator[WebServer]:
    root = tmp_path / "www"
    root.mkdir()
    server = WebServer(root)
    yield server
    server.close()
