"""A real `cairn server` (SQLite or PostgreSQL) with accounts, a project logged through its API,
a registry whose aliases moved over time: what the registry, audit and webhook page tests share.

People: root (server administrator), vera (viewer of registry 'models', reader of project
'vision'), mona (member of 'models', no role in 'vision'), otto (admin of project 'vision', no
role in 'models'), stan (no role anywhere).

Project 'vision', artifact 'clf' (model): v0, v1, v2 with metadata acc 0.80, 0.85, 0.90; the
artifact alias 'best' was set on v0, then moved to v1, then to v2.
Registry 'models' (protected alias 'production'), collection 'classifier': collection v0 -> clf:v0,
v1 -> clf:v1, v2 -> clf:v2; 'production' was on v0, then v1, then v2 ('staging' on v1, then
removed). ``moves`` holds the time of each move (at least a second apart).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

import cairn
import cairn.sdk.context as run_context
from cairn.sdk.backend import reset_backends

PEOPLE = ("root", "vera", "mona", "otto", "stan")


@dataclass
class World:
    server: Any
    keys: dict[str, str]
    version_ids: list[int]
    moves: dict[str, list[datetime]] = field(default_factory=dict)  # alias -> when it moved

    @property
    def url(self) -> str:
        return str(self.server.url)

    def api(self, who: str = "root") -> httpx.Client:
        return httpx.Client(
            base_url=self.url + "/api/v1",
            headers={"Authorization": f"Bearer {self.keys[who]}"},
            timeout=60,
        )

    @contextmanager
    def web(self, who: str) -> Iterator[httpx.Client]:
        """A signed-in dashboard client (form posts carry this site's Origin)."""
        with httpx.Client(base_url=self.url, headers={"origin": self.url}, timeout=60) as c:
            r = c.post("/login", data={"key": self.keys[who], "next": "/"})
            assert r.status_code == 303, r.text
            yield c


def start_server(database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    from cairn.server.deps import ServerSettings
    from cairn.server.testing import ServerThread

    settings = ServerSettings(database_url=database_url, store=tmp_path / "server-store")
    monkeypatch.setenv("CAIRN_QUIET", "1")
    monkeypatch.setattr(run_context, "_current", None)
    return ServerThread(settings)


def _ok(r: httpx.Response) -> Any:
    assert r.is_success, (r.status_code, r.text)
    return r.json() if r.content else None


def build(server: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> World:
    accounts = server.app.state.services.accounts
    keys: dict[str, str] = {}
    accounts.create_user("root", admin=True)
    for name in PEOPLE:
        if name != "root":
            accounts.create_user(name)
        keys[name] = accounts.create_key(name)[1]
    monkeypatch.setenv("CAIRN_URL", server.url)
    monkeypatch.setenv("CAIRN_API_KEY", keys["root"])
    reset_backends()
    world = World(server, keys, [])
    folder = tmp_path / "model"
    folder.mkdir()
    with cairn.init(project="vision", job_type="train") as run:
        for i in range(3):
            (folder / "weights.bin").write_bytes(f"weights {i}".encode())
            art = cairn.Artifact("clf", type="model", metadata={"acc": round(0.8 + i * 0.05, 2)})
            art.add_file(str(folder / "weights.bin"))
            run.log_artifact(art, tags=["eval"] if i else [])
            world.version_ids.append(art.id)
    accounts.set_role("vision", "vera", "read")
    accounts.set_role("vision", "otto", "admin")
    with world.api() as root:
        for i, vid in enumerate(world.version_ids):  # best: v0, then v1, then v2
            _ok(root.post(f"/versions/{vid}/aliases", json={"alias": "best"}))
            world.moves.setdefault("best", []).append(_now())
            if i < 2:
                time.sleep(1.1)
        _ok(root.post("/registries", json={"name": "models", "protected_aliases": ["production"]}))
        for member, role in (("vera", "viewer"), ("mona", "member")):
            _ok(root.put(f"/registries/models/members/{member}", json={"role": role}))
        links = "/registries/models/collections/classifier/links"
        _ok(root.post(links, json={"version_id": world.version_ids[0], "aliases": ["production"]}))
        world.moves["production"] = [_now()]
        time.sleep(1.1)
        _ok(root.post(links, json={"version_id": world.version_ids[1], "aliases": ["staging"]}))
        aliases = "/registries/models/collections/classifier/versions/{}/aliases"
        _ok(root.post(aliases.format("v1"), json={"add": ["production"]}))
        world.moves["production"].append(_now())
        time.sleep(1.1)
        _ok(root.post(links, json={"version_id": world.version_ids[2]}))
        _ok(root.post(aliases.format("v2"), json={"add": ["production"]}))
        _ok(root.post(aliases.format("v1"), json={"remove": ["staging"]}))
        world.moves["production"].append(_now())
    reset_backends()
    return world


@contextmanager
def running_world(
    request: pytest.FixtureRequest,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    kind: str | None = None,
) -> Iterator[World]:
    """The world on a server over SQLite or PostgreSQL (``kind``, else ``request.param``)."""
    if (kind or request.param) == "sqlite":
        url = f"sqlite:///{tmp_path / 'server.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    with start_server(url, tmp_path, monkeypatch) as server:
        yield build(server, tmp_path, monkeypatch)
        reset_backends()


@contextmanager
def shared_running_world(
    kind: str, request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[World]:
    """`running_world` built once for the tests of a module that only read it (a
    module-scoped fixture): its own CAIRN_DIR and working directory, as tests/conftest.py's
    `cairn_env` gives each test; the environment is restored once it is built."""
    root = tmp_path_factory.mktemp("world")
    if kind == "sqlite":
        url = f"sqlite:///{root / 'server.db'}"
    else:
        url = request.getfixturevalue("module_postgres_url")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CAIRN_DIR", str(root / "cairn-home"))
        for var in ("CAIRN_DATABASE_URL", "CAIRN_URL", "CAIRN_API_KEY", "CAIRN_PROJECT"):
            mp.delenv(var, raising=False)
        (root / "work").mkdir()
        mp.chdir(root / "work")
        server = start_server(url, root, mp).start()
        try:
            world = build(server, root, mp)
        except BaseException:
            server.stop()
            raise
    try:
        yield world
    finally:
        server.stop()
        reset_backends()


def _now() -> datetime:
    from datetime import UTC

    return datetime.now(UTC)


def between(a: datetime, b: datetime) -> str:
    """A datetime-local value (UTC, whole seconds) after move ``a`` and before move ``b``: the
    first whole second after ``a`` (taken when a's request had returned; b's request was sent
    more than a second later)."""
    from datetime import timedelta

    after = a.replace(microsecond=0) + timedelta(seconds=1)
    assert after < b
    return after.strftime("%Y-%m-%dT%H:%M:%S")


@contextmanager
def browser_page(browser: Any, world: World, who: str | None) -> Iterator[Any]:
    """A Chromium page signed in as ``who`` (None: not signed in); fails on JavaScript errors."""
    context = browser.new_context(base_url=world.url, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.set_default_timeout(15_000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if who is not None:
        page.goto("/login")
        page.locator("#key").fill(world.keys[who])
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(lambda url: "/login" not in url)
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors: {errors}"


__all__ = [
    "PEOPLE",
    "World",
    "between",
    "browser_page",
    "build",
    "running_world",
    "shared_running_world",
    "start_server",
]
