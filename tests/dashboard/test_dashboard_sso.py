"""Single sign-on to the dashboard against a real OpenID Connect provider on loopback
(node-oidc-provider, installed by scripts/services.sh), driven in a real Chromium: the
authorization code flow with PKCE, the ID token verified, the user the provider names signed
in; an unknown user refused (or created when the server allows it); a forged answer refused."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from cairn.server.deps import ServerSettings
from cairn.server.oidc import Oidc, OidcConfig
from cairn.server.testing import ServerThread
from cairn.service.accounts import Principal
from unprivileged import require

PROVIDER_DIR = Path(
    os.environ.get("CAIRN_TEST_OIDC_DIR", Path.home() / ".cache" / "cairn-tests" / "oidc-provider")
)
CLIENT_ID, CLIENT_SECRET = "cairn-dashboard", "a secret shared with the provider"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@dataclass
class Sso:
    server: ServerThread
    issuer: str


@pytest.fixture
def sso(tmp_path: Path, postgres_url: str) -> Iterator[Sso]:
    node = shutil.which("node")
    require(node is not None, "Node.js is not installed (scripts/services.sh installs it)")
    require(
        (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir(),
        f"oidc-provider is not installed in {PROVIDER_DIR} (scripts/services.sh installs it)",
    )
    port = _free_port()
    issuer = f"http://127.0.0.1:{port}"
    settings = ServerSettings(
        database_url=postgres_url,
        store=tmp_path / "store",
        oidc_issuer=issuer,
        oidc_client_id=CLIENT_ID,
        oidc_client_secret=CLIENT_SECRET,
    )
    script = PROVIDER_DIR / "provider.mjs"  # beside its node_modules: ESM resolves from there
    shutil.copy(Path(__file__).with_name("oidc_provider.mjs"), script)
    with ServerThread(settings) as server:
        callback = server.url + "/login/sso/callback"
        provider = subprocess.Popen(
            [str(node), str(script), str(port), CLIENT_ID, CLIENT_SECRET, callback],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        try:
            assert provider.stdout is not None
            line = provider.stdout.readline()
            assert line.startswith("ready"), f"the OpenID provider did not start: {line!r}"
            yield Sso(server, issuer)
        finally:
            provider.terminate()
            provider.wait(timeout=10)
            if provider.stdout is not None:
                provider.stdout.close()


def _sign_in_at_the_provider(page: Any, login: str) -> None:
    page.get_by_role("link", name="Sign in with single sign-on").click()
    page.locator("input[name=login]").fill(login)
    page.locator("input[name=password]").fill("anything")
    page.locator("button[type=submit]").click()


def test_a_person_signs_in_through_the_provider(sso: Sso, browser: Any) -> None:
    from playwright.sync_api import expect

    accounts = sso.server.app.state.services.accounts
    accounts.create_user("ann")
    context = browser.new_context(base_url=sso.server.url)
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto("/")  # the dashboard asks to sign in first
    expect(page).to_have_url(re.compile(r"/login"))
    _sign_in_at_the_provider(page, "ann")
    expect(page).to_have_url(re.compile(re.escape(sso.server.url) + r"/$"))
    expect(page.locator(".who")).to_contain_text("ann")
    signed = sso.server.app.state.services.registry.audit_log(action="session.sign_in")
    assert [(e.target, e.after) for e in signed] == [("ann", {"method": "sso"})]

    # someone the provider knows but Cairn does not: refused, nothing created
    other = browser.new_context(base_url=sso.server.url)
    page = other.new_page()
    page.set_default_timeout(15_000)
    page.goto("/login")
    _sign_in_at_the_provider(page, "mallory")
    expect(page).to_have_url(re.compile(r"/login"))
    expect(page.locator("body")).to_contain_text("there is no Cairn user 'mallory'")
    assert [u.name for u in accounts.list_users()] == ["ann"]

    # a server that creates people on their first sign-in
    services = sso.server.app.state.services
    services.oidc.close()
    services.oidc = Oidc(OidcConfig(sso.issuer, CLIENT_ID, CLIENT_SECRET, create_users=True))
    # the provider still knows mallory's session: straight back, signed in and created
    page.get_by_role("link", name="Sign in with single sign-on").click()
    expect(page.locator(".who")).to_contain_text("mallory")
    assert sorted(u.name for u in accounts.list_users()) == ["ann", "mallory"]
    made = accounts.get_user("mallory")
    assert not made.is_admin
    assert accounts.roles(Principal(user_id=made.id, name=made.name, is_admin=False)) == {}
    context.close()
    other.close()


def test_a_forged_or_replayed_answer_is_refused(sso: Sso) -> None:
    accounts = sso.server.app.state.services.accounts
    accounts.create_user("ann")
    with httpx.Client(base_url=sso.server.url, timeout=30) as web:
        # no flow was started here: no state cookie
        r = web.get("/login/sso/callback", params={"code": "x", "state": "y"})
        assert r.status_code == 303 and "/login" in r.headers["location"]
        assert web.get("/", follow_redirects=False).status_code == 303  # not signed in
        # a flow started, but the answer carries another state
        started = web.get("/login/sso", follow_redirects=False)
        assert started.status_code == 303
        assert started.headers["location"].startswith(sso.issuer + "/auth?")
        assert "code_challenge_method=S256" in started.headers["location"]
        r = web.get("/login/sso/callback", params={"code": "x", "state": "forged"})
        assert r.status_code == 303
        assert web.get("/", follow_redirects=False).status_code == 303
    failed = sso.server.app.state.services.registry.audit_log(action="session.sign_in_failed")
    assert len(failed) == 2 and all(e.after == {"user": "", "method": "sso"} for e in failed)


def test_without_a_provider_the_sso_routes_send_back_to_sign_in(
    tmp_path: Path, postgres_url: str
) -> None:
    settings = ServerSettings(database_url=postgres_url, store=tmp_path / "store")
    with ServerThread(settings) as server:
        server.app.state.services.accounts.create_user("ann")
        with httpx.Client(base_url=server.url, timeout=30) as web:
            page = web.get("/login")
            assert "single sign-on" not in page.text.lower()
            for path in ("/login/sso", "/login/sso/callback"):
                r = web.get(path, follow_redirects=False)
                assert r.status_code == 303 and r.headers["location"].endswith("/login")
