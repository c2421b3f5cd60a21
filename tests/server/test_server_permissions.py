"""Accounts and permissions: every route refuses a key without the right role, a key sees only
its user's projects, objects are readable only through a project, history names the user."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import pytest
from server_helpers import Raw

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import AuthenticationError, PermissionDeniedError, ProjectNotFoundError
from cairn.service.accounts import Accounts

RawFactory = Callable[[str | None], Raw]
UseServer = Callable[[str | None], None]


@dataclass
class World:
    keys: dict[str, str]
    run_id: str
    version_id: int
    tree: str
    blob: bytes
    extra_key_id: int


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def world(accounts: Accounts, use_server: UseServer, tmp_path: Path) -> World:
    """root (server admin); owner, who logged project p (so is its admin); writer and reader
    of p; stranger, with no role."""
    keys = {}
    accounts.create_user("root", admin=True)
    for name in ("root", "owner", "writer", "reader", "stranger"):
        if name != "root":
            accounts.create_user(name)
        keys[name] = accounts.create_key(name)[1]
    use_server(keys["owner"])
    data = tmp_path / "data"
    _write(data / "a.txt", "alpha")
    _write(data / "sub" / "b.txt", "beta")
    with cairn.init(project="p", job_type="prep") as run:
        art = cairn.Artifact("data", "dataset")
        art.add_dir(data)
        run.log_artifact(art, aliases=["best"])
    accounts.create_user("extra")
    accounts.set_role("p", "writer", "write")
    accounts.set_role("p", "reader", "read")
    extra = accounts.create_key("reader", "spare")[0]
    return World(keys, run.id, art.id, art.digest, b"alpha", extra.id)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    need: str  # any | read | write | admin (project) | server | self (the path's user: reader)
    stranger: int  # what a user without a role in p gets (404 hides the project, 403 refuses)
    body: Callable[[World], Any] | None = None


_names = count()
ROUTES = [
    Route("GET", "/me", "any", 200),
    Route("GET", "/projects", "any", 200),
    Route("POST", "/projects", "any", 201, lambda w: {"name": f"fresh-{next(_names)}"}),
    Route("GET", "/projects/p/runs", "read", 404),
    Route("POST", "/projects/p/runs", "write", 403, lambda w: {"notes": "x"}),
    Route("GET", "/runs/{run}", "read", 404),
    Route("PATCH", "/runs/{run}", "write", 404, lambda w: {"notes": "edited"}),
    Route("GET", "/runs/{run}/metrics", "read", 404),
    Route("GET", "/runs/{run}/inputs", "read", 404),
    Route("GET", "/runs/{run}/outputs", "read", 404),
    Route("GET", "/projects/p/artifacts", "read", 404),
    Route("GET", "/projects/p/artifacts/data/versions", "read", 404),
    Route("GET", "/projects/p/artifacts/data/versions/best", "read", 404),
    Route("GET", "/projects/p/artifacts/data", "read", 404),
    Route("PATCH", "/projects/p/artifacts/data", "write", 403, lambda w: {"description": "x"}),
    Route(
        "POST",
        "/projects/p/artifacts/data/versions",
        "write",
        403,
        lambda w: {"type": "dataset", "digest": w.tree, "size": 9, "file_count": 2},
    ),
    Route("GET", "/versions/{version}", "read", 404),
    Route("GET", "/versions/{version}/history", "read", 404),
    Route("GET", "/versions/{version}/logged-by", "read", 404),
    Route("GET", "/versions/{version}/used-by", "read", 404),
    Route("GET", "/versions/{version}/lineage", "read", 404),
    Route("PATCH", "/versions/{version}", "write", 404, lambda w: {"aliases": ["best", "x"]}),
    Route("GET", "/objects/{blob}", "read", 404),
    Route("POST", "/objects/fetch", "read", 404, lambda w: {"digests": [w.tree]}),
    Route("POST", "/objects/missing", "any", 200, lambda w: {"digests": [w.tree]}),
    Route("GET", "/projects/p/members", "read", 404),
    Route("PUT", "/projects/p/members/extra", "admin", 404, lambda w: {"role": "read"}),
    Route("DELETE", "/projects/p/members/extra", "admin", 404),
    Route("GET", "/users", "server", 403),
    Route("POST", "/users", "server", 403, lambda w: {"name": f"user-{next(_names)}"}),
    Route("GET", "/root-digests", "server", 403),
    Route("GET", "/users/reader/keys", "self", 403),
    Route("POST", "/users/reader/keys", "self", 403, lambda w: {"label": "more"}),
    Route("POST", "/runs/{run}/inputs", "write", 404, lambda w: {"version_id": w.version_id}),
    Route("DELETE", "/keys/{extra_key}", "self", 404),
    Route("DELETE", "/projects/p/artifacts/data", "write", 403),  # destructive: near the end
    Route("DELETE", "/versions/{version}?force=true", "write", 404),  # last: destructive
]
RANK = {"reader": 1, "writer": 2, "owner": 3, "root": 4}


def expected(route: Route, who: str) -> int | None:
    """None: allowed (2xx); else the refusal status."""
    if route.need == "any":
        return None
    if route.need == "server":
        return None if who == "root" else 403
    if route.need == "self":
        return None if who in ("root", "reader") else route.stranger
    if who == "stranger":
        return route.stranger
    need = {"read": 1, "write": 2, "admin": 3}[route.need]
    return None if RANK[who] >= need else 403


def _fill(path: str, w: World) -> str:
    return path.format(
        run=w.run_id, version=w.version_id, blob=hash_bytes(w.blob), extra_key=w.extra_key_id
    )


def test_every_route_refuses_a_key_without_the_right_role(world: World, raw: RawFactory) -> None:
    clients = {who: raw(key) for who, key in world.keys.items()}
    anonymous, wrong = raw(None), raw("cairn_" + "x" * 43)
    for route in ROUTES:
        path = _fill(route.path, world)

        def body() -> Any:
            return route.body(world) if route.body else None  # noqa: B023

        for client in (anonymous, wrong):
            response = client.call(route.method, path, json=body())
            assert response.status_code == 401, (route, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
        for who in ("stranger", "reader", "writer", "owner", "root"):
            response = clients[who].call(route.method, path, json=body())
            refusal = expected(route, who)
            if refusal is None:
                assert 200 <= response.status_code < 300, (route, who, response.text)
            else:
                assert response.status_code == refusal, (route, who, response.text)
                assert response.json()["error"]["code"] in (
                    "permission_denied",
                    "project_not_found",
                    "run_not_found",
                    "artifact_not_found",
                    "object_not_found",
                    "not_found",
                ), (route, who, response.text)


def test_keys_see_only_their_projects_and_revoked_keys_stop_at_once(
    world: World, raw: RawFactory, accounts: Accounts
) -> None:
    def projects(who: str) -> set[str]:
        return {p["name"] for p in raw(world.keys[who]).get("/projects").json()["items"]}

    assert projects("reader") == {"p"}
    assert projects("stranger") == set()
    assert raw(world.keys["reader"]).get("/me").json()["projects"] == {"p": "read"}
    # a key revoked through the API stops working in the same instant
    reader = raw(world.keys["reader"])
    mine = reader.get("/users/reader/keys").json()["items"]
    assert all("key" not in k and "key_hash" not in k for k in mine)
    first = next(k for k in mine if k["label"] == "")
    assert reader.call("DELETE", f"/keys/{first['id']}").status_code == 200
    refused = reader.get("/projects")
    assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer"
    # another user's key cannot be revoked (nor its existence learned)
    other = accounts.list_keys("writer")[0].id
    assert raw(world.keys["stranger"]).call("DELETE", f"/keys/{other}").status_code == 404


def test_reader_cannot_log_alias_or_delete_through_the_sdk(
    world: World, use_server: UseServer, tmp_path: Path
) -> None:
    use_server(world.keys["reader"])
    art = cairn.Api("p").artifact("data:best")
    out = art.download(tmp_path / "out")
    assert (Path(out) / "sub" / "b.txt").read_text() == "beta"
    with pytest.raises(PermissionDeniedError, match="read access"):
        cairn.init(project="p")
    art.aliases.append("mine")
    with pytest.raises(PermissionDeniedError, match="read access"):
        art.save()
    with pytest.raises(PermissionDeniedError, match="read access"):
        art.delete(delete_aliases=True)
    assert cairn.Api("p").artifact("data:best").state == "committed"
    # a key without access to the project is told nothing about it
    use_server(world.keys["stranger"])
    with pytest.raises(ProjectNotFoundError, match="does not exist or you have no access"):
        cairn.Api("p").artifact("data:best")
    use_server("cairn_" + "y" * 43)
    with pytest.raises(AuthenticationError, match="not valid"):
        cairn.Api("p").projects()


def test_objects_are_readable_only_through_a_project(
    world: World, raw: RawFactory, use_server: UseServer, tmp_path: Path
) -> None:
    stranger = raw(world.keys["stranger"])
    blob = hash_bytes(world.blob)
    # the existence check tells a stranger nothing about what project p holds
    assert stranger.missing([blob, world.tree]) == {blob, world.tree}
    assert raw(world.keys["reader"]).missing([blob, world.tree]) == set()
    assert stranger.get(f"/objects/{blob}").status_code == 404
    # referencing p's tree by its digest alone gains nothing: the version is refused
    attack = {"type": "dataset", "digest": world.tree, "size": 9, "file_count": 2}
    refused = stranger.post("/projects/mine/artifacts/stolen/versions", json=attack)
    assert refused.status_code == 404
    assert refused.json()["error"]["code"] == "object_not_found"
    # having the bytes is enough: upload them (verified, stored once) and they are yours
    assert stranger.upload([world.blob]).status_code == 200
    assert stranger.missing([blob, world.tree]) == {world.tree}
    assert stranger.get(f"/objects/{blob}").content == world.blob
    # the same files logged to the stranger's own project work as usual
    use_server(world.keys["stranger"])
    data = tmp_path / "copy"
    _write(data / "a.txt", "alpha")
    _write(data / "sub" / "b.txt", "beta")
    with cairn.init(project="mine") as run:
        art = cairn.Artifact("data", "dataset")
        art.add_dir(data)
        run.log_artifact(art)
    assert art.digest == world.tree
    assert stranger.get(f"/objects/{world.tree}").status_code == 200
    assert {p["name"] for p in stranger.get("/projects").json()["items"]} == {"mine"}
    assert stranger.get("/me").json()["projects"] == {"mine": "admin"}


def test_history_and_runs_record_the_user(
    world: World, use_server: UseServer, accounts: Accounts
) -> None:
    use_server(world.keys["writer"])
    with cairn.init(project="p", job_type="edit") as run:
        art = run.use_artifact("data:best")
        art.aliases.append("reviewed")
        art.save()
    assert cairn.Api("p").run(run.id).info.user == "writer"
    assert cairn.Api("p").run(world.run_id).info.user == "owner"
    history = cairn.Api("p").artifact("data:best").history()
    assert [(h.field, h.user) for h in history] == [("created", "owner"), ("aliases", "writer")]
