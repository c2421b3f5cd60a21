"""The dashboard inside `cairn server` (cairn.server.app.create_app): the same accounts and
roles as the API, sign-in with an API key, data logged through the server's API."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

import cairn
import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends

ORIGIN_HEADER = "origin"


@pytest.fixture
def server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from cairn.server.deps import ServerSettings
    from cairn.server.testing import ServerThread

    settings = ServerSettings(
        database_url=f"sqlite:///{tmp_path / 'server.db'}", store=tmp_path / "server-store"
    )
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    with ServerThread(settings) as running:
        monkeypatch.setenv("CAIRN_URL", running.url)
        reset_backends()
        yield running
        reset_backends()


def log_through_the_server(folder: Path) -> None:
    """A run that logs a small dataset through the server's API (the SDK, remote)."""
    folder.mkdir()
    (folder / "rows.csv").write_text("a,b\n1,2\n3,4\n")
    (folder / "notes.md").write_text("# Notes\n")
    with cairn.init(project="vision", job_type="prepare", config={"size": 2}) as run:
        art = cairn.Artifact("images", type="dataset", description="Two rows.")
        art.add_dir(folder)
        run.log_artifact(art, aliases=["stable"])


def client(server: Any) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={ORIGIN_HEADER: server.url}, timeout=30)


@contextmanager
def sign_in(server: Any, key: str) -> Iterator[httpx.Client]:
    with client(server) as c:
        r = c.post("/login", data={"key": key, "next": "/"})
        assert r.status_code == 303, r.text
        yield c


def test_open_server_serves_the_dashboard(server: Any, tmp_path: Path) -> None:
    log_through_the_server(tmp_path / "data")
    with client(server) as c:
        home = c.get("/")
        assert home.status_code == 200 and "text/html" in home.headers["content-type"]
        assert "open mode" in home.text and 'href="/p/vision"' in home.text
        page = c.get("/p/vision/a/images/v/v0")
        assert "Two rows." in page.text and "stable" in page.text
        csv = c.get("/p/vision/a/images/v/v0/files/rows.csv")
        assert ">a</th>" in csv.text and ">3</td>" in csv.text and "All 2 rows" in csv.text
        assert c.get("/p/vision/a/images/v/v0/raw/rows.csv").text == "a,b\n1,2\n3,4\n"
        run = server.app.state.services.registry.list_runs("vision")[0]
        assert "prepare" in c.get(f"/p/vision/r/{run.id}").text
        # the API is untouched: JSON, under /api/v1
        assert c.get("/api/v1/health").json()["status"] == "ok"
        assert c.get("/api/v1/nope").json()["error"]["code"] == "not_found"
        assert c.get("/favicon.ico").status_code in (200, 301)


def test_server_accounts_and_roles(server: Any, tmp_path: Path) -> None:
    log_through_the_server(tmp_path / "data")
    accounts = server.app.state.services.accounts
    accounts.create_user("root", admin=True)
    _, root_key = accounts.create_key("root")
    accounts.create_user("rita")
    reader, rita_key = accounts.create_key("rita")
    accounts.set_role("vision", "rita", "read")
    accounts.create_user("olaf")
    _, olaf_key = accounts.create_key("olaf")
    registry = server.app.state.services.registry

    with client(server) as anonymous:
        r = anonymous.get("/p/vision")
        assert r.status_code == 303 and r.headers["location"] == "/login?next=%2Fp%2Fvision"
        assert "Sign in" in anonymous.get("/login").text
        bad = anonymous.post("/login", data={"key": "cairn_wrong", "next": "/"})
        assert bad.status_code == 401

    with sign_in(server, rita_key) as rita:
        page = rita.get("/p/vision/a/images/v/v0")
        assert page.status_code == 200 and "rita" in page.text
        assert "description-form" not in page.text  # read access: nothing to edit
        r = rita.post("/p/vision/a/images/v/v0/description", data={"description": "x"})
        assert r.status_code == 403
        assert rita.get("/p/vision/a/images/v/v0/raw/notes.md").text == "# Notes\n"
        accounts.revoke_key(reader.id)  # takes effect at once
        assert rita.get("/p/vision").status_code == 303

    with sign_in(server, olaf_key) as olaf:
        assert 'href="/p/vision"' not in olaf.get("/").text
        assert olaf.get("/p/vision").status_code == 404
        assert olaf.get("/p/vision/a/images/v/v0/raw/rows.csv").status_code == 404

    with sign_in(server, root_key) as root:
        r = root.post("/p/vision/a/images/v/v0/description", data={"description": "By *root*."})
        assert r.status_code == 303
        page = root.get("/p/vision/a/images/v/v0")
        assert "<em>root</em>" in page.text
        entry = registry.history(registry.resolve("vision", "images", "v0").id)[-1]
        assert entry.field == "description" and entry.user == "root"
        r = root.post("/logout")
        assert r.status_code == 303


def test_sign_in_in_a_browser(server: Any, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    log_through_the_server(tmp_path / "data")
    accounts = server.app.state.services.accounts
    accounts.create_user("root", admin=True)
    _, key = accounts.create_key("root")
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/p/vision/a/images")
    expect(page).to_have_url(re.compile(r"/login\?next="))
    page.locator("#key").fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/p/vision/a/images$"))
    expect(page.locator(".who")).to_contain_text("root")
    page.get_by_role("link", name="v0", exact=True).click()
    page.locator("#edit-description").click()
    page.locator("#description-form textarea").fill("Edited in the browser.")
    page.get_by_role("button", name="Save").click()
    expect(page.locator("#description-view")).to_have_text("Edited in the browser.")
    context.close()


def test_sign_in_with_a_password_in_a_browser(server: Any, browser: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    log_through_the_server(tmp_path / "data")
    accounts = server.app.state.services.accounts
    accounts.create_user("ann", admin=True)
    accounts.set_password("ann", "a long enough passphrase")
    context = browser.new_context(base_url=server.url)
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto("/p/vision/a/images")
    page.get_by_label("User name").fill("ann")
    page.get_by_label("Password").fill("not the passphrase")
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("alert")).to_contain_text("do not match")
    page.get_by_label("User name").fill("ann")
    page.get_by_label("Password").fill("a long enough passphrase")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(re.compile(r"/p/vision/a/images$"))
    expect(page.locator(".who")).to_contain_text("ann")
    context.close()
