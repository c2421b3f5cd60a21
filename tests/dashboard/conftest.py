"""Fixtures for the dashboard tests: a store seeded once per session, a real uvicorn server and
a headless Chromium (module-scoped)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import CHROMIUM, launch_browser, require


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "changes_world: a test that changes the registry world (registry_world.py), so it gets "
        "one of its own instead of the one its module's other tests share",
    )


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def world_db(request: pytest.FixtureRequest) -> str:
    """The database of the registry world's server: SQLite or PostgreSQL."""
    return str(request.param)


@pytest.fixture(scope="module")
def shared_world(
    world_db: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Any]:
    """The registry world (registry_world.py), built once per module and database for the
    tests that only read it."""
    from registry_world import shared_running_world

    with shared_running_world(world_db, request, tmp_path_factory) as world:
        yield world


@pytest.fixture
def world(
    world_db: str,
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Any]:
    """The registry world on SQLite and on PostgreSQL: the module's shared one, or a fresh one
    for a test marked ``changes_world``. (test_webhook_pages.py and
    test_dashboard_versions_table.py build their own.)"""
    if request.node.get_closest_marker("changes_world") is None:
        yield request.getfixturevalue("shared_world")
        return
    from registry_world import running_world

    with running_world(request, tmp_path, monkeypatch, kind=world_db) as running:
        yield running


@pytest.fixture(scope="session")
def seeded_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store seeded once per session (cairn.demo.run_demo and dashboard_seed.py)."""
    require(find_spec("numpy") is not None, "NumPy is not installed (the demo pipeline needs it)")
    from dashboard_seed import make_repo, seed

    from cairn.sdk.backend import reset_backends

    root = tmp_path_factory.mktemp("dashboard")
    home = root / "home"
    work = root / "work"
    work.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_DIR", str(home))
        for var in ("CAIRN_DATABASE_URL", "CAIRN_URL", "CAIRN_API_KEY", "CAIRN_PROJECT"):
            mp.delenv(var, raising=False)
        mp.chdir(work)
        make_repo(work)  # runs record a commit and an uncommitted diff
        seed(work)
        reset_backends()
    return home


@pytest.fixture(scope="module")
def playwright_instance() -> Iterator[Any]:
    require(Path(CHROMIUM).exists(), f"Chromium is not installed at {CHROMIUM}")
    require(find_spec("playwright") is not None, "the playwright package is not installed")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def browser(playwright_instance: Any) -> Iterator[Any]:
    b = launch_browser(playwright_instance)
    yield b
    b.close()
