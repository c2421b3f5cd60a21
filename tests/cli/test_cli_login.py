"""`cairn login / logout / whoami` and the client-side `cairn user ...` / `cairn key ...`
commands, against a real server (ServerThread) on SQLite and on PostgreSQL."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import Invoke, log_with_sdk, make_files

from cairn import config
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts

pytestmark = pytest.mark.embedded_only("each test starts and logs in to its own servers")


@pytest.fixture
def server(database_url: str, tmp_path: Path) -> Iterator[ServerThread]:
    settings = ServerSettings(database_url=database_url, store=tmp_path / "server-store")
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def accounts(server: ServerThread) -> Accounts:
    found: Accounts = server.app.state.services.accounts
    return found


@pytest.fixture
def keys(accounts: Accounts) -> dict[str, str]:
    """An administrator 'root' and a user 'alice' (write access to project 'demo')."""
    accounts.create_user("root", admin=True)
    accounts.create_user("alice")
    accounts.set_role("demo", "alice", "write", create=True)
    return {name: accounts.create_key(name, "test")[1] for name in ("root", "alice")}


def _creds(home: Path) -> Path:
    return home / "credentials.json"


def _login(cli: Invoke, server: ServerThread, key: str) -> None:
    cli("login", server.url, "--key", key)


# --- login --------------------------------------------------------------------------------------
def test_login_saves_private_credentials_and_routes_calls_to_the_server(
    cli: Invoke, server: ServerThread, keys: dict[str, str], cli_env: Path, tmp_path: Path
) -> None:
    result = cli("login", server.url + "/", "--key", keys["alice"])
    assert "alice" in result.stdout and server.url in result.stdout
    path = _creds(cli_env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": server.url, "key": keys["alice"]}
    assert config.server_url() == server.url
    assert config.api_key() == keys["alice"]

    # the SDK (no CAIRN_URL/CAIRN_API_KEY in the environment) logs to the server
    data = make_files(tmp_path / "src" / "data", {"a.csv": "1\n"})
    log_with_sdk("demo", data, "data")
    assert server.app.state.services.registry.resolve("demo", "data").version == 0
    listing = cli("artifact", "ls", "demo").stdout
    assert "data" in listing

    # after logout the same command reads the (empty) embedded store
    assert "Logged out" in cli("logout").stdout
    assert not path.exists()
    assert config.server_url() is None and config.api_key() is None
    cli("artifact", "ls", "demo", code=3)


def test_login_takes_the_key_from_the_environment(
    cli: Invoke, server: ServerThread, keys: dict[str, str], cli_env: Path
) -> None:
    cli("login", server.url, env={"CAIRN_API_KEY": keys["root"]})
    assert json.loads(_creds(cli_env).read_text())["key"] == keys["root"]


def test_login_reads_the_key_from_stdin(
    server: ServerThread, keys: dict[str, str], cli_env: Path
) -> None:
    from typer.testing import CliRunner

    from cairn.cli.main import app

    result = CliRunner().invoke(app, ["login", server.url, "--key", "-"], input=keys["root"] + "\n")
    assert result.exit_code == 0, result.stderr
    assert json.loads(_creds(cli_env).read_text())["key"] == keys["root"]


def test_login_without_a_key_off_a_terminal_is_a_usage_error(
    cli: Invoke, server: ServerThread, keys: dict[str, str], cli_env: Path
) -> None:
    result = cli("login", server.url, code=2)
    assert "--key" in result.stderr
    assert not _creds(cli_env).exists()


def test_login_with_a_bad_key_saves_nothing(
    cli: Invoke, server: ServerThread, keys: dict[str, str], cli_env: Path
) -> None:
    result = cli("login", server.url, "--key", "cairn_not-a-key", code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "refused this API key" in lines[0] and "nothing was saved" in lines[0]
    assert not _creds(cli_env).exists()


def test_a_bad_key_does_not_replace_a_good_login(
    cli: Invoke, server: ServerThread, keys: dict[str, str], cli_env: Path
) -> None:
    _login(cli, server, keys["alice"])
    cli("login", server.url, "--key", "cairn_wrong", code=1)
    assert json.loads(_creds(cli_env).read_text())["key"] == keys["alice"]


def test_logout_when_not_logged_in_is_fine(cli: Invoke, cli_env: Path) -> None:
    assert "Not logged in" in cli("logout").stdout


# --- config precedence -------------------------------------------------------------------------
def test_environment_wins_and_the_saved_key_stays_with_its_server(
    cli: Invoke,
    server: ServerThread,
    keys: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _login(cli, server, keys["alice"])
    monkeypatch.setenv("CAIRN_URL", server.url + "/api/v1")  # the same server, spelled longer
    assert config.api_key() == keys["alice"]
    monkeypatch.setenv("CAIRN_URL", "http://elsewhere.example:8000")
    assert config.server_url() == "http://elsewhere.example:8000"
    assert config.api_key() is None  # never send the saved key to another server
    monkeypatch.setenv("CAIRN_API_KEY", "from-env")
    assert config.api_key() == "from-env"


def test_unreadable_credentials_are_ignored(cli_env: Path) -> None:
    cli_env.mkdir(parents=True, exist_ok=True)
    _creds(cli_env).write_text("{not json")
    assert config.server_url() is None and config.api_key() is None


# --- whoami ------------------------------------------------------------------------------------
def test_whoami_on_a_server(
    cli: Invoke, server: ServerThread, keys: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _login(cli, server, keys["alice"])
    text = cli("whoami").stdout
    assert server.url in text and "cairn login" in text
    assert "alice" in text and "demo (write)" in text
    data = json.loads(cli("whoami", "--json").stdout)
    assert data["mode"] == "server" and data["url"] == server.url
    assert data["user"] == "alice" and data["admin"] is False
    assert data["projects"] == {"demo": "write"} and data["source"] == "login"

    cli("logout")
    monkeypatch.setenv("CAIRN_URL", server.url)
    monkeypatch.setenv("CAIRN_API_KEY", keys["root"])
    data = json.loads(cli("whoami", "--json").stdout)
    assert data["user"] == "root" and data["admin"] is True and data["source"] == "env"
    assert "administrator" in cli("whoami").stdout


def test_whoami_embedded(
    cli: Invoke, cli_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = cli("whoami").stdout
    assert "Embedded store" in text and str(cli_env) in text
    data = json.loads(cli("whoami", "--json").stdout)
    assert data["mode"] == "embedded" and data["home"] == str(cli_env)
    assert data["database"] == f"sqlite:///{cli_env / 'cairn.db'}"

    monkeypatch.setenv("CAIRN_DATABASE_URL", "postgresql+psycopg://me:secret@db.example/cairn")
    text = cli("whoami").stdout
    assert "db.example" in text and "secret" not in text
    assert "secret" not in cli("whoami", "--json").stdout


# --- users and keys ----------------------------------------------------------------------------
def test_admin_manages_users_and_keys(
    cli: Invoke, server: ServerThread, keys: dict[str, str], accounts: Accounts
) -> None:
    _login(cli, server, keys["root"])
    new_key = cli("user", "create", "bob").stdout.strip()
    assert new_key and "\n" not in new_key
    cli("user", "create", "carol", "--admin")
    users = {u["name"]: u["is_admin"] for u in json.loads(cli("user", "ls", "--json").stdout)}
    assert users == {"root": True, "alice": False, "bob": False, "carol": True}
    text = cli("user", "ls").stdout
    assert text.splitlines()[0].split() == ["USER", "ADMIN", "CREATED"] and "carol" in text
    cli("user", "create", "bob", code=1)  # already exists

    second = cli("key", "create", "bob", "--label", "ci").stdout.strip()
    listed = json.loads(cli("key", "ls", "bob", "--json").stdout)
    assert {k["label"] for k in listed} == {"created with cairn user create", "ci"}
    assert all("key" not in k for k in listed)  # never the secrets
    assert "ci" in cli("key", "ls", "bob").stdout
    own = json.loads(cli("key", "ls", "--json").stdout)
    assert [k["user"] for k in own] == ["root"]

    # bob's second key works until revoked
    assert accounts.authenticate(second).name == "bob"
    ci_id = next(k["id"] for k in listed if k["label"] == "ci")
    assert "Revoked" in cli("key", "revoke", str(ci_id)).stdout
    revoked = next(
        k for k in json.loads(cli("key", "ls", "bob", "--json").stdout) if k["id"] == ci_id
    )
    assert revoked["revoked_at"]
    assert accounts.authenticate(new_key).name == "bob"
    cli("key", "revoke", "999999", code=3)
    cli("key", "revoke", "not-a-number", code=2)


def test_a_revoked_key_stops_working(
    cli: Invoke, server: ServerThread, keys: dict[str, str], cli_env: Path
) -> None:
    _login(cli, server, keys["root"])
    dave_key = cli("user", "create", "dave").stdout.strip()
    dave_id = json.loads(cli("key", "ls", "dave", "--json").stdout)[0]["id"]

    cli("login", server.url, "--key", dave_key)
    assert json.loads(cli("whoami", "--json").stdout)["user"] == "dave"
    _login(cli, server, keys["root"])
    cli("key", "revoke", str(dave_id))

    _creds(cli_env).write_text(json.dumps({"url": server.url, "key": dave_key}))
    result = cli("whoami", code=1)
    assert "not valid" in result.stderr
    cli("login", server.url, "--key", dave_key, code=1)


def test_a_user_manages_only_their_own_keys(
    cli: Invoke, server: ServerThread, keys: dict[str, str]
) -> None:
    _login(cli, server, keys["alice"])
    result = cli("user", "ls", code=1)
    assert result.stderr.startswith("error: ") and "administrators" in result.stderr
    result = cli("user", "create", "mallory", code=1)
    assert "administrators" in result.stderr and len(result.stderr.splitlines()) == 1
    result = cli("key", "ls", "root", code=1)
    assert "your own" in result.stderr
    result = cli("key", "create", "root", code=1)
    assert "your own" in result.stderr
    root_id = json.loads(
        cli("key", "ls", "root", "--json", env={"CAIRN_API_KEY": keys["root"]}).stdout
    )[0]["id"]
    cli("key", "revoke", str(root_id), code=3)  # someone else's key: not found for alice

    mine = cli("key", "create", "--label", "laptop").stdout.strip()
    labels = [k["label"] for k in json.loads(cli("key", "ls", "--json").stdout)]
    assert labels == ["test", "laptop"]
    cli("login", server.url, "--key", mine)
    assert json.loads(cli("whoami", "--json").stdout)["user"] == "alice"


def test_account_commands_need_a_server(cli: Invoke) -> None:
    for args in (("user", "ls"), ("key", "ls"), ("key", "revoke", "1")):
        result = cli(*args, code=1)
        assert "cairn login" in result.stderr


def test_an_open_server_says_how_to_create_the_first_admin(
    cli: Invoke, server: ServerThread
) -> None:
    result = cli("login", server.url, "--key", "anything")
    assert "open" in result.stdout
    result = cli("user", "ls", code=1)
    assert "create-admin" in result.stderr
    result = cli("key", "ls", code=1)
    assert "create-admin" in result.stderr
