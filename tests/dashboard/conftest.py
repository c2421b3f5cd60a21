"""Fixtures for the dashboard tests: a store seeded once per session, a real uvicorn server and
a headless Chromium (module-scoped)."""

from __future__ import annotations

from collections.abc import Iterator
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
from dashboard_helpers import CHROMIUM, launch_browser, require


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
