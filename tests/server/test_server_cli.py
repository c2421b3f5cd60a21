"""`cairn server`: starting (SQLite under CAIRN_DIR by default, several workers), migrations run
or refused with advice, and the account commands (first admin, users, keys, roles)."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest
from server_helpers import ServerProcess
from typer.testing import CliRunner, Result

import cairn
from cairn.cli.main import app
from cairn.metadata.engine import create_engine
from cairn.metadata.migrate import HEAD_REVISION, alembic_config, current_revision
from cairn.sdk.backend import reset_backends
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread


def cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(app, list(args), catch_exceptions=False)
    assert result.exit_code == code, (args, result.stdout, result.stderr)
    return result


def test_account_commands_manage_who_may_do_what(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'server.db'}"
    root_key = cli("server", "create-admin", "root", "--database-url", db).stdout.strip()
    alice_key = cli("server", "create-user", "alice", "--database-url", db).stdout.strip()
    assert root_key.startswith("cairn_") and alice_key.startswith("cairn_")
    assert root_key != alice_key
    again = cli("server", "create-user", "alice", "--database-url", db, code=1)
    assert "already exists" in again.stderr
    cli("server", "grant", "alice", "vision", "read", "--database-url", db)
    bad = cli("server", "grant", "alice", "vision", "owner", "--database-url", db, code=2)
    assert "invalid role" in bad.stderr
    users = cli("server", "users", "--database-url", db, "--json").stdout
    assert '"root"' in users and '"alice"' in users
    spare = cli("server", "create-key", "alice", "--label", "laptop", "--database-url", db)
    keys = cli("server", "keys", "alice", "--database-url", db).stdout
    assert "laptop" in keys and spare.stdout.strip() not in keys  # secrets are never listed

    with ServerThread(ServerSettings(db, tmp_path / "store")) as server:

        def get(path: str, key: str | None) -> httpx.Response:
            headers = {"Authorization": f"Bearer {key}"} if key else {}
            return httpx.get(f"{server.url}/api/v1{path}", headers=headers)

        assert get("/projects", None).status_code == 401  # a user exists: keys are required
        assert get("/me", alice_key).json()["projects"] == {"vision": "read"}
        assert get("/me", root_key).json()["admin"] is True
        alice_keys = get("/users/alice/keys", alice_key).json()["items"]
        first = next(k for k in alice_keys if k["label"] == "created with create-user")
        cli("server", "revoke-key", str(first["id"]), "--database-url", db)
        assert get("/me", alice_key).status_code == 401
        assert get("/me", spare.stdout.strip()).status_code == 200
        cli("server", "revoke-access", "alice", "vision", "--database-url", db)
        assert get("/me", spare.stdout.strip()).json()["projects"] == {}


def test_migrations_run_at_start_or_are_refused_with_advice(tmp_path: Path) -> None:
    from alembic import command

    db = f"sqlite:///{tmp_path / 'old.db'}"
    engine = create_engine(db)
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0001")
    assert current_revision(engine) == "0001"
    refused = cli("server", "--no-migrate", "--database-url", db, code=1)
    assert "schema revision 0001" in refused.stderr
    assert "cairn server migrate" in refused.stderr
    assert current_revision(engine) == "0001"
    cli("server", "migrate", "--database-url", db)
    assert current_revision(engine) == HEAD_REVISION
    with engine.begin() as conn:
        conn.exec_driver_sql("UPDATE alembic_version SET version_num = '9999'")
    newer = cli("server", "--database-url", db, code=1)
    assert "9999" in newer.stderr and "Upgrade Cairn" in newer.stderr
    engine.dispose()


def test_server_defaults_to_sqlite_under_cairn_dir_and_runs_several_workers(
    tmp_path: Path, cairn_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "server-home"
    env = {**os.environ, "CAIRN_DIR": str(home)}
    env.pop("CAIRN_DATABASE_URL", None)
    server = ServerProcess("", home / "store", "--workers", "2", env=env)
    try:
        log = server.log.read_text()
        assert "WARNING: this server has no users" in log
        assert f"sqlite:///{home / 'cairn.db'}" in log
        monkeypatch.setenv("CAIRN_URL", server.url)
        reset_backends()
        data = tmp_path / "data"
        data.mkdir()
        (data / "x.txt").write_text("x")
        for _ in range(4):  # several requests: spread over the workers
            with cairn.init(project="p") as run:
                run.log_artifact(data, name="data", type="dataset")
        assert [r.name for r in cairn.Api("p").runs()] and (home / "cairn.db").is_file()
        assert cairn.Api("p").artifact("data:latest").version == "v0"
    finally:
        server.stop()


def test_settings_without_an_option_are_read_from_the_environment(tmp_path: Path) -> None:
    """The JSON body cap and the sign-in rate limit have no `cairn server` option: their
    CAIRN_SERVER_* variables set them, also for every worker process."""
    home = tmp_path / "server-home"
    env = {
        **os.environ,
        "CAIRN_DIR": str(home),
        "CAIRN_SERVER_MAX_JSON_BYTES": "2000",
        "CAIRN_SERVER_AUTH_FAILURES": "2",
    }
    env.pop("CAIRN_DATABASE_URL", None)
    server = ServerProcess("", home / "store", "--workers", "2", env=env)
    try:
        big = {"name": "p", "description": "x" * 3000}
        answer = httpx.post(f"{server.url}/api/v1/projects", json=big, timeout=30)
        assert answer.status_code == 413, answer.text
        small = httpx.post(f"{server.url}/api/v1/projects", json={"name": "p"}, timeout=30)
        assert small.status_code == 201, small.text
        CliRunner().invoke(app, ["server", "create-admin", "root"], env={"CAIRN_DIR": str(home)})
        wrong = {"Authorization": "Bearer cairn_" + "x" * 43}
        codes = [
            httpx.get(f"{server.url}/api/v1/me", headers=wrong, timeout=30).status_code
            for _ in range(8)  # counted per worker process: 8 over 2 workers pass 2 in one
        ]
        assert codes[:2] == [401, 401] and 429 in codes[2:], codes
    finally:
        server.stop()
