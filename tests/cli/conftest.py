"""Fixtures for the CLI tests: run `cairn` through its real entry point (the Typer app, with
the same error handling as the installed command) on a fresh store per test."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke, make_files, seed_store
from typer.testing import CliRunner, Result

import cairn.sdk.run as run_module
from cairn.cli.main import app
from cairn.sdk.backend import reset_backends


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made once per session (see `seed_store`); tests get a copy."""
    base = tmp_path_factory.mktemp("seeded")
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_DIR", str(home))
        mp.setenv("CAIRN_QUIET", "1")
        for var in ("CAIRN_DATABASE_URL", "CAIRN_URL", "CAIRN_PROJECT"):
            mp.delenv(var, raising=False)
        mp.setattr(run_module, "_current", None)
        reset_backends()
        seed_store(base / "src")
        reset_backends()
    return home


@pytest.fixture
def store(seeded_template: Path, cli_env: Path) -> Path:
    """This test's CAIRN_DIR holds a copy of the seeded store (see `seed_store`)."""
    reset_backends()
    shutil.copytree(seeded_template, cli_env)
    return cli_env


@pytest.fixture(autouse=True)
def cli_env(cairn_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.delenv("CAIRN_DEBUG", raising=False)
    monkeypatch.setattr(run_module, "_current", None)
    reset_backends()
    yield cairn_env
    reset_backends()


@pytest.fixture
def cli() -> Invoke:
    """``cli("artifact", "ls", code=0)`` runs `cairn artifact ls`, checks the exit code and
    returns the result (``.stdout``, ``.stderr``)."""
    runner = CliRunner()

    def invoke(*args: str, code: int | None = 0, env: dict[str, str] | None = None) -> Result:
        reset_backends()
        try:
            result = runner.invoke(app, list(args), env=env, catch_exceptions=False)
        finally:
            reset_backends()
        if code is not None:
            assert result.exit_code == code, (
                f"cairn {' '.join(args)} exited {result.exit_code}, expected {code}\n"
                f"stdout: {result.stdout}\nstderr: {result.stderr}"
            )
        return result

    return invoke


@pytest.fixture
def cli_json(cli: Invoke) -> Callable[..., Any]:
    """Run a command with --json and return the parsed stdout."""

    def invoke(*args: str) -> Any:
        result = cli(*args, "--json")
        return json.loads(result.stdout)

    return invoke


@pytest.fixture
def folder(tmp_path: Path) -> Callable[..., Path]:
    """``folder("data", {"a.csv": "1"})`` writes files under a new folder and returns it."""

    def make(name: str, files: dict[str, str]) -> Path:
        return make_files(tmp_path / "src" / name, files)

    return make
