"""Operations (issue 11, item 13): liveness vs readiness, a database that goes away, 500s that
tell clients nothing internal, and clients that ride out a server restart.

The database that goes away is a PostgreSQL cluster of the test's own (initdb + pg_ctl on a
free port), never the shared one."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from server_helpers import ServerProcess, client_env, free_port

from cairn.client.http import Http
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def require(condition: bool, why: str) -> None:
    """The rule of tests/conftest.py: skip locally, fail in CI (CAIRN_REQUIRE_ALL=1)."""
    if condition:
        return
    if os.environ.get("CAIRN_REQUIRE_ALL") == "1":
        pytest.fail(f"required test dependency missing: {why}", pytrace=False)
    pytest.skip(why)


@dataclass
class OwnPostgres:
    data: Path
    port: int
    sockets: Path
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _ctl(self, *args: str) -> None:
        options = f"-p {self.port} -k {self.sockets} -c fsync=off -c listen_addresses=127.0.0.1"
        command = [str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-o", options, "-l",
                   str(self.log), "-w", *args]  # fmt: skip
        _as_postgres(command)

    def start(self) -> None:
        self._ctl("start")

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")


def _as_postgres(command: list[str]) -> None:
    if os.geteuid() == 0:
        command = ["runuser", "-u", "postgres", "--", *command]
    subprocess.run(command, check=True, capture_output=True, timeout=120)


@pytest.fixture
def own_postgres() -> Iterator[OwnPostgres]:
    require((PG_BIN / "initdb").exists(), f"PostgreSQL 15 is not installed at {PG_BIN}")
    require(os.geteuid() != 0 or shutil.which("runuser") is not None, "runuser is missing")
    root = Path(tempfile.mkdtemp(prefix="cairn-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    cluster = OwnPostgres(root / "data", free_port(), root, root / "log")
    _as_postgres([str(PG_BIN / "initdb"), "-D", str(cluster.data), "-A", "trust",
                  "-U", "postgres"])  # fmt: skip
    cluster.start()
    try:
        yield cluster
    finally:
        try:
            cluster.stop()
        except subprocess.CalledProcessError:
            pass  # stopped by the test
        shutil.rmtree(root, ignore_errors=True)


def test_readiness_follows_the_database_and_500s_hide_internals(
    own_postgres: OwnPostgres, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = ServerSettings(database_url=own_postgres.url, store=tmp_path / "store")
    with ServerThread(settings) as server:
        accounts: Accounts = server.app.state.services.accounts
        accounts.create_user("root", admin=True)
        key = accounts.create_key("root")[1]
        auth = {"Authorization": f"Bearer {key}"}
        with httpx.Client(base_url=server.url + "/api/v1", timeout=60) as web:
            ready = web.get("/ready")
            assert ready.status_code == 200
            assert ready.json() == {"status": "ready", "checks": {"database": "ok", "store": "ok"}}
            assert web.get("/projects", headers=auth).status_code == 200

            own_postgres.stop()
            assert web.get("/health").status_code == 200  # the process lives
            down = web.get("/ready")
            assert down.status_code == 503
            assert down.json()["checks"] == {"database": "unavailable", "store": "ok"}
            failed = web.get("/projects", headers=auth)
            assert failed.status_code == 503, failed.text
            assert failed.headers["retry-after"]
            error = failed.json()["error"]
            assert error["code"] == "unavailable" and "retry" in error["message"]
            # nothing internal reaches the client: no URL, host, port or driver message
            for secret in (own_postgres.url, str(own_postgres.port), "psycopg", "127.0.0.1"):
                assert secret not in failed.text, secret
            incident = error["detail"]["incident"]
            assert any(incident in r.getMessage() for r in caplog.records)  # it is logged

            own_postgres.start()
            assert web.get("/ready").status_code == 200
            assert web.get("/projects", headers=auth).status_code == 200


def test_the_client_rides_out_a_server_restart(tmp_path: Path, postgres_url: str) -> None:
    env = client_env("", None, tmp_path / "home")
    servers = [ServerProcess(postgres_url, tmp_path / "store", env=env)]
    port = servers[0].port
    http = Http(servers[0].url, None)
    try:
        assert http.json("GET", "/projects")["items"] == []
        stopped = threading.Event()

        def restart() -> None:
            servers[0].stop()  # graceful: SIGINT, then it finishes its requests and exits
            stopped.set()
            time.sleep(5.0)  # a slow restart: longer than the old client's ~3 s of retries
            servers.append(ServerProcess(postgres_url, tmp_path / "store", env=env, port=port))

        restarter = threading.Thread(target=restart)
        restarter.start()
        stopped.wait(60)
        listed = http.json("GET", "/projects")  # sent while nothing listens on the port
        restarter.join()
        assert listed["items"] == []
        assert len(servers) == 2  # answered by the new server
    finally:
        http.close()
        for server in servers:
            server.stop()
