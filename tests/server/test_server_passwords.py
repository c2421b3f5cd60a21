"""People sign in to the dashboard with a user name and password (API keys stay for scripts):
the password is stored as an Argon2id hash, a wrong one is refused like an unknown user, the
attempts count against the sign-in rate limit and are audited, and setting a new password ends
the sessions the old one started."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from cairn.errors import InvalidInputError
from cairn.metadata.accounts import User
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts

PASSWORD = "correct horse battery staple"


@pytest.fixture
def server(tmp_path: Path, postgres_url: str) -> Iterator[ServerThread]:
    settings = ServerSettings(
        database_url=postgres_url, store=tmp_path / "store", auth_failures=4, auth_window=600
    )
    with ServerThread(settings) as running:
        yield running


@pytest.fixture
def accounts(server: ServerThread) -> Accounts:
    found: Accounts = server.app.state.services.accounts
    found.create_user("root", admin=True)
    found.create_user("ann")
    found.create_user("bob")  # no password: keys only
    return found


def _sign_in(server: ServerThread, web: httpx.Client, **form: str) -> httpx.Response:
    return web.post(
        "/login", data={"next": "/", **form}, headers={"origin": server.url}, follow_redirects=False
    )


def test_a_password_signs_in_and_is_stored_hashed(server: ServerThread, accounts: Accounts) -> None:
    accounts.set_password("ann", PASSWORD)
    with server.app.state.services.registry.engine.connect() as conn:
        stored = conn.scalar(sa.select(User.password_hash).where(User.name == "ann"))
    assert stored is not None and stored.startswith("$argon2id$") and PASSWORD not in stored
    with httpx.Client(base_url=server.url, timeout=60) as web:
        r = _sign_in(server, web, user="ann", password=PASSWORD)
        assert r.status_code == 303, r.text
        assert "httponly" in r.headers["set-cookie"].lower()
        page = web.get("/")
        assert page.status_code == 200 and "ann" in page.text
    refused = "That user name and password do not match"
    for form in (
        {"user": "ann", "password": PASSWORD + "!"},  # wrong password
        {"user": "nobody", "password": PASSWORD},  # unknown user: the same answer
        {"user": "bob", "password": PASSWORD},  # a user without a password
        {"user": "ann", "password": ""},
    ):
        with httpx.Client(base_url=server.url, timeout=60) as web:
            r = _sign_in(server, web, **form)
            assert r.status_code == 401 and refused in r.text, (form, r.text)
            assert web.get("/", follow_redirects=False).status_code == 303


def test_bad_passwords_are_refused_when_set(accounts: Accounts) -> None:
    for bad in ("short", "x" * 1025):
        with pytest.raises(InvalidInputError, match="12 to 1024 characters"):
            accounts.set_password("ann", bad)
    assert accounts.verify_password("ann", "short") is None  # nothing was set


def test_password_sign_ins_are_rate_limited_and_audited(
    server: ServerThread, accounts: Accounts
) -> None:
    accounts.set_password("ann", PASSWORD)
    with httpx.Client(base_url=server.url, timeout=60) as web:
        for _ in range(4):
            assert (
                _sign_in(server, web, user="ann", password="guess guess guess").status_code == 401
            )
        r = _sign_in(server, web, user="ann", password=PASSWORD)
        assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    entries = server.app.state.services.registry.audit_log(action="session.sign_in_failed")
    assert len(entries) == 4 and all(e.after == {"user": "ann"} for e in entries)
    assert all(PASSWORD not in str(e.to_dict()) for e in entries)


def test_a_new_password_ends_the_sessions_of_the_old_one_but_not_keys(
    server: ServerThread, accounts: Accounts
) -> None:
    accounts.set_password("ann", PASSWORD)
    key = accounts.create_key("ann")[1]
    with (
        httpx.Client(base_url=server.url, timeout=60) as by_password,
        httpx.Client(base_url=server.url, timeout=60) as by_key,
    ):
        assert _sign_in(server, by_password, user="ann", password=PASSWORD).status_code == 303
        assert _sign_in(server, by_key, key=key).status_code == 303
        accounts.set_password("ann", PASSWORD + " again")
        assert by_password.get("/", follow_redirects=False).status_code == 303  # signed out
        assert by_key.get("/").status_code == 200
        assert _sign_in(server, by_password, user="ann", password=PASSWORD).status_code == 401
        signed = _sign_in(server, by_password, user="ann", password=PASSWORD + " again")
        assert signed.status_code == 303
        # revoking every key leaves a password session alone
        for k in accounts.list_keys("ann"):
            accounts.revoke_key(k.id)
        assert by_password.get("/").status_code == 200
        assert by_key.get("/", follow_redirects=False).status_code == 303
        accounts.set_password("ann", None)  # keys only from now on
        assert by_password.get("/", follow_redirects=False).status_code == 303


def test_cli_sets_a_password_from_stdin(
    server: ServerThread, accounts: Accounts, postgres_url: str
) -> None:
    cairn_script = Path(sys.executable).parent / "cairn"  # installed by pip install -e .
    command = [str(cairn_script), "server", "set-password", "ann", "--password-stdin"]
    done = subprocess.run(
        [*command, "--database-url", postgres_url],
        input=PASSWORD + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert "ann can sign in to the dashboard" in done.stderr + done.stdout
    assert accounts.verify_password("ann", PASSWORD) is not None
    short = subprocess.run(
        [*command, "--database-url", postgres_url],
        input="short\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert short.returncode != 0 and "12 to 1024 characters" in short.stderr
    assert accounts.verify_password("ann", PASSWORD) is not None  # unchanged
