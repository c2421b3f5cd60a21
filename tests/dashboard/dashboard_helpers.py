"""Helpers for the dashboard tests: the dashboard over a store, a real uvicorn server on
127.0.0.1 (random port), headless Chromium."""

from __future__ import annotations

import os
import secrets
import socket
import threading
import time
import warnings
from pathlib import Path
from typing import Any

import pytest

from cairn.dashboard.auth import SignIn, Viewer

with warnings.catch_warnings():
    # starlette warns that it prefers httpx2 at import; the tests use httpx
    warnings.simplefilter("ignore")
    from fastapi.testclient import TestClient

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
]

__all__ = [
    "CHROMIUM",
    "LiveServer",
    "StubAccess",
    "TestClient",
    "launch_browser",
    "open_backend",
    "require",
]


def require(condition: bool, why: str) -> None:
    """tests/conftest.py's rule: skip locally, fail in CI (CAIRN_REQUIRE_ALL=1), when a real
    part a test needs is missing."""
    if condition:
        return
    if os.environ.get("CAIRN_REQUIRE_ALL") == "1":
        pytest.fail(f"required test dependency missing: {why}", pytrace=False)
    pytest.skip(why)


def open_backend(home: Path) -> Any:
    from cairn.sdk.backend import EmbeddedBackend

    return EmbeddedBackend(home, database_url=f"sqlite:///{home / 'cairn.db'}")


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 in a thread."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.server = uvicorn.Server(
            uvicorn.Config(app, log_level="warning", lifespan="off", access_log=False)
        )
        self.thread = threading.Thread(
            target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.sock.close()


def launch_browser(playwright: Any) -> Any:
    require(os.path.exists(CHROMIUM), f"Chromium is not installed at {CHROMIUM}")
    return playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)


class StubAccess:
    """Accounts as the server would give them: keys naming viewers, sessions started by
    signing in with a key (the server's own sessions are tested in test_dashboard_server)."""

    def __init__(self) -> None:
        self.keys = {
            "key-alice": Viewer("alice", None),
            "key-bob": Viewer("bob", {"p": "read"}),
            "key-carol": Viewer("carol", {}),
            "key-dave": Viewer("dave", {"p": "write"}),
        }
        self.sessions: dict[str, Viewer] = {}

    def has_accounts(self) -> bool:
        return True

    def viewer(self, session: str | None) -> Viewer | None:
        return self.sessions.get(session or "")

    def sign_in(self, key: str, *, address: str, replacing: str | None) -> SignIn:
        viewer = self.keys.get(key)
        if viewer is None:
            return SignIn(None)
        self.sessions.pop(replacing or "", None)
        token = secrets.token_urlsafe(16)
        self.sessions[token] = viewer
        return SignIn(token, max_age=3600)

    def sign_in_password(
        self, user: str, password: str, *, address: str, replacing: str | None
    ) -> SignIn:
        return SignIn(None)  # passwords are tested on a real server (test_server_passwords)

    def sso(self) -> bool:
        return False  # single sign-on is tested on a real server (test_dashboard_sso)

    def sso_start(self, redirect_uri: str, next_url: str) -> tuple[str, str]:
        raise AssertionError("no single sign-on here")

    def sso_finish(
        self,
        code: str,
        state: str,
        saved: str | None,
        redirect_uri: str,
        *,
        address: str,
        replacing: str | None,
    ) -> SignIn:
        raise AssertionError("no single sign-on here")

    def sign_out(self, session: str | None) -> None:
        self.sessions.pop(session or "", None)
