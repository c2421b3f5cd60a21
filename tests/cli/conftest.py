"""Fixtures for the CLI tests: run `cairn` through its real entry point (the Typer app, with
the same error handling as the installed command) on a fresh store per test.

Every test runs twice, once per backend (the `backend` fixture):

- ``embedded``: CAIRN_DIR is the store (SQLite + packs), as on a laptop;
- ``server``: a real server (uvicorn in a thread, `ServerThread`) on a data folder of its own
  (the same SQLite + pack layout), with an administrator's API key; the client has CAIRN_URL,
  CAIRN_API_KEY and a CAIRN_DIR of its own that holds only its caches.

A test that only makes sense on one backend says so with
``@pytest.mark.embedded_only("why")`` (or a module-level ``pytestmark``): it runs once,
embedded.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cli_helpers import Invoke, make_files, seed_store
from typer.testing import CliRunner, Result

import cairn.sdk.context as run_context
from cairn.cli.main import app
from cairn.sdk.backend import reset_backends

BACKENDS = ("embedded", "server")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "embedded_only(why): a CLI test that runs on the embedded store only, not through a "
        "server too (tests/cli/conftest.py)",
    )


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "backend" in metafunc.fixturenames:
        marker = metafunc.definition.get_closest_marker("embedded_only")
        if marker is None:
            metafunc.parametrize("backend", BACKENDS, indirect=True)
        elif not marker.args:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: embedded_only needs a reason")


@pytest.fixture
def backend(request: pytest.FixtureRequest) -> str:
    """The backend this test runs on: "embedded" or "server" (see the module's docstring)."""
    return str(getattr(request, "param", "embedded"))


@pytest.fixture(scope="session")
def seeded_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A store made once per session (see `seed_store`); tests get a copy."""
    base = tmp_path_factory.mktemp("seeded")
    home = base / "home"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_DIR", str(home))
        mp.setenv("CAIRN_QUIET", "1")
        for var in ("CAIRN_DATABASE_URL", "CAIRN_URL", "CAIRN_API_KEY", "CAIRN_PROJECT"):
            mp.delenv(var, raising=False)
        mp.setattr(run_context, "_current", None)
        reset_backends()
        seed_store(base / "src")
        reset_backends()
    return home


@pytest.fixture
def store(cli_env: Path, server_data: Path | None) -> Path:
    """The store holds a copy of the seeded store (see `seed_store`): CAIRN_DIR embedded, the
    server's data folder (seeded by `cli_env` before the server started) on a server."""
    return server_data if server_data is not None else cli_env


@pytest.fixture
def server_data(backend: str, tmp_path: Path) -> Path | None:
    """The server's data folder (database cairn.db and store/, as under CAIRN_DIR), or None
    on the embedded backend."""
    return tmp_path / "server-data" if backend == "server" else None


@dataclass
class Served:
    """A server the test's client talks to: its URL and an administrator's API key."""

    url: str
    key: str

    def env(self, client_dir: Path) -> dict[str, str]:
        return {"CAIRN_URL": self.url, "CAIRN_API_KEY": self.key, "CAIRN_DIR": str(client_dir)}


@pytest.fixture(scope="session")
def stopping_servers() -> Iterator[list[Any]]:
    """Servers told to stop: each test's server winds down while the next test runs (saves
    0.2 s a test); the session waits for them all at its end."""
    servers: list[Any] = []
    yield servers
    for server in servers:
        server.stop()


@pytest.fixture
def serve(stopping_servers: list[Any]) -> Iterator[Callable[[Path], Served]]:
    """``serve(folder)`` starts a real server (uvicorn in a thread) on a data folder laid out
    like CAIRN_DIR (cairn.db and store/; created when missing), with an administrator
    'tester'; it stops after the test."""
    from cairn.server.deps import ServerSettings
    from cairn.server.testing import ServerThread

    started: list[ServerThread] = []

    def start(data: Path) -> Served:
        data.mkdir(parents=True, exist_ok=True)
        settings = ServerSettings(f"sqlite:///{data / 'cairn.db'}", data / "store")
        server = ServerThread(settings).start()
        started.append(server)
        accounts = server.app.state.services.accounts
        accounts.create_user("tester", admin=True)
        return Served(server.url, accounts.create_key("tester")[1])

    yield start
    for server in started:
        server.stop(wait=False)
        stopping_servers.append(server)


@pytest.fixture(autouse=True)
def cli_env(
    cairn_env: Path,
    server_data: Path | None,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[Path]:
    """CAIRN_DIR (on a server, the client's own folder: caches only). A test asking for
    `store` starts with the seeded store; on a server it is copied before the server opens
    it."""
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.delenv("CAIRN_DEBUG", raising=False)
    monkeypatch.setattr(run_context, "_current", None)
    reset_backends()
    seeded = "store" in request.fixturenames
    template: Path | None = request.getfixturevalue("seeded_template") if seeded else None
    if template is not None:
        shutil.copytree(template, server_data or cairn_env)
    if server_data is not None:
        served: Served = request.getfixturevalue("serve")(server_data)
        for var, value in served.env(cairn_env).items():
            monkeypatch.setenv(var, value)
    yield cairn_env
    run_context._current = None
    reset_backends()
    if server_data is not None:  # every call went to the server: no embedded store was made
        assert not (cairn_env / "cairn.db").exists(), "a command used the embedded store"


@pytest.fixture
def cli() -> Invoke:
    """``cli("artifact", "ls", code=0)`` runs `cairn artifact ls`, checks the exit code and
    returns the result (``.stdout``, ``.stderr``)."""
    runner = CliRunner()

    def invoke(
        *args: str, code: int | None = 0, env: dict[str, str | None] | None = None
    ) -> Result:
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
