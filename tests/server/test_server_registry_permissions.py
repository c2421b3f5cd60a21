"""The permission matrix of the registry, search, audit and webhook routes: every such route is
called by a user of each registry role (and by none, a wrong key, a server administrator), and
answers 2xx exactly when the role allows it. Registries have roles of their own (viewer <
member < maintainer < admin), so these routes have their own matrix; test_server_permissions
adds it to the route-table check, so a new route with no entry in either fails there."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import Raw

import cairn
from cairn.server.deps import ServerSettings
from cairn.service.accounts import Accounts

RawFactory = Callable[[str | None], Raw]
UseServer = Callable[[str | None], None]

RANK = {"viewer": 1, "member": 2, "maintainer": 3, "radmin": 4, "root": 5}
PEOPLE = ("stranger", "viewer", "member", "maintainer", "radmin", "root")
_fresh = count()


@dataclass
class World:
    keys: dict[str, str]
    version_id: int
    webhook_id: int
    admin: Raw  # root's client, to set things up between calls


@dataclass(frozen=True)
class Route:
    """Who may call a route. ``need``: any (any valid key) | server (server administrators) |
    viewer | member | maintainer | admin (a role in registry ``models``). A user below the
    need gets ``below`` (403), one with no role in the registry ``stranger`` (404: the registry
    is not shown to them). ``setup`` prepares each call (it gets the world and returns the
    values to put in the path); ``check`` says more about a 2xx answer."""

    need: str
    body: Callable[[World], Any] | None = None
    query: str = ""
    stranger: int = 404
    below: int = 403
    setup: Callable[[World], dict[str, str]] | None = None
    check: Callable[[str, Any], None] | None = None


def _visible_registries(who: str, answer: Any) -> None:
    names = [r["name"] for r in answer["items"]]
    if who == "root":  # server administrators see every registry, also those made above
        assert "models" in names, answer
    else:
        assert names == ([] if who == "stranger" else ["models"]), (who, answer)


def _exists(who: str, answer: Any) -> None:
    assert answer == {"exists": who != "stranger"}, (who, answer)


def _links_shown(who: str, answer: Any) -> None:
    # everyone here may read project p; only registry members see where it is linked
    shown = {x["registry"] for x in answer["items"]}
    assert shown == (set() if who == "stranger" else {"models"}), (who, answer)


def _fresh_link(w: World) -> dict[str, str]:
    """A new collection version (linked by root) for a call that unlinks it."""
    made = w.admin.post(
        "/registries/models/collections/clf/links", json={"version_id": w.version_id}
    )
    assert made.status_code == 200, made.text
    return {"ref": f"v{made.json()['version']}"}


def _fresh_collection(w: World) -> dict[str, str]:
    return {"collection": f"c{next(_fresh)}"}


def _fresh_webhook(w: World) -> dict[str, str]:
    """A new webhook (added by root) for a call that removes it."""
    made = w.admin.post(
        "/registries/models/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["version.created"]},
    )
    assert made.status_code == 201, made.text
    return {"webhook_id": str(made.json()["webhook"]["id"])}


def _fresh_member(w: World) -> dict[str, str]:
    return {"member": "extra"}


API = "/api/v1"
REGISTRY_MATRIX: dict[tuple[str, str], Route] = {
    ("POST", "/registries"): Route("server", lambda w: {"name": f"reg{next(_fresh)}"}),
    ("GET", "/registries"): Route("any", check=_visible_registries),
    ("GET", "/registries-exist"): Route("any", query="?name=models", check=_exists),
    ("GET", "/registries/{registry}"): Route("viewer"),
    ("PATCH", "/registries/{registry}"): Route("admin", lambda w: {"description": "edited"}),
    ("GET", "/registries/{registry}/members"): Route("viewer"),
    ("PUT", "/registries/{registry}/members/{member}"): Route(
        "admin", lambda w: {"role": "viewer"}, setup=_fresh_member
    ),
    ("GET", "/registries/{registry}/collections"): Route("viewer"),
    ("GET", "/registries/{registry}/collections/{collection}"): Route("viewer"),
    ("PATCH", "/registries/{registry}/collections/{collection}"): Route(
        "member", lambda w: {"description": "edited"}
    ),
    ("GET", "/registries/{registry}/collections/{collection}/versions"): Route("viewer"),
    ("GET", "/registries/{registry}/collections/{collection}/versions/{ref}"): Route("viewer"),
    ("GET", "/registries/{registry}/collections/{collection}/history"): Route("viewer"),
    ("POST", "/registries/{registry}/collections/{collection}/links"): Route(
        "member", lambda w: {"version_id": w.version_id}, setup=_fresh_collection
    ),
    ("POST", "/registries/{registry}/collections/{collection}/versions/{ref}/aliases"): Route(
        "member", lambda w: {"add": [f"a{next(_fresh)}"]}
    ),
    ("DELETE", "/registries/{registry}/collections/{collection}/versions/{ref}"): Route(
        "member", setup=_fresh_link
    ),
    ("GET", "/registries/{registry}/search"): Route(
        "viewer", query='?filters={"metadata.acc": {"$gt": 0.5}}'
    ),
    ("GET", "/versions/{version_id}/links"): Route("any", check=_links_shown),
    ("GET", "/search"): Route("any", query='?filters={"type": "model"}'),
    ("GET", "/audit"): Route("server"),
    ("GET", "/registries/{registry}/webhooks"): Route("admin"),
    ("POST", "/registries/{registry}/webhooks"): Route(
        "admin", lambda w: {"url": "http://127.0.0.1:9/hook", "events": ["webhook.test"]}
    ),
    # a webhook is not shown to anyone who does not administer its registry
    ("GET", "/webhooks/{webhook_id}"): Route("admin", below=404),
    ("GET", "/webhooks/{webhook_id}/deliveries"): Route("admin", below=404),
    ("POST", "/webhooks/{webhook_id}/test"): Route("admin", below=404),
    ("DELETE", "/webhooks/{webhook_id}"): Route("admin", below=404, setup=_fresh_webhook),
    # retention: registry admins set a collection's link TTL (0: links never expire)
    ("GET", "/registries/{registry}/retention"): Route("viewer"),
    ("PUT", "/registries/{registry}/collections/{collection}/retention"): Route(
        "admin", lambda w: {"ttl_seconds": 0}
    ),
}
"""Every registry, search, audit and registry-webhook route of the API."""
ROUTES = {(m, API + p) for m, p in REGISTRY_MATRIX}


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> ServerSettings:
    """The matrix sends a wrong key to every route: no rate limit here."""
    return ServerSettings(
        database_url=postgres_url, store=tmp_path / "server-store", auth_failures=0
    )


@pytest.fixture
def world(accounts: Accounts, use_server: UseServer, raw: RawFactory, tmp_path: Path) -> World:
    """root (server admin) made registry 'models' (production protected) and linked p/clf:v0
    into collection clf; viewer, member, maintainer and radmin hold those roles in it; stranger
    none. Everyone may read project p, so only the registry role decides."""
    keys = {}
    accounts.create_user("root", admin=True)
    for name in PEOPLE:
        if name != "root":
            accounts.create_user(name)
        keys[name] = accounts.create_key(name)[1]
    accounts.create_user("extra")
    use_server(keys["root"])
    (tmp_path / "m").write_text("model")
    with cairn.init(project="p") as run:
        art = cairn.Artifact("clf", type="model", metadata={"acc": 0.9})
        art.add_file(tmp_path / "m")
        run.log_artifact(art)
    root = raw(keys["root"])
    made = root.post("/registries", json={"name": "models", "protected_aliases": ["production"]})
    assert made.status_code == 201, made.text
    for who, role in (
        ("viewer", "viewer"),
        ("member", "member"),
        ("maintainer", "maintainer"),
        ("radmin", "admin"),
    ):
        r = root.call("PUT", f"/registries/models/members/{who}", json={"role": role})
        assert r.status_code == 200, r.text
    link = root.post("/registries/models/collections/clf/links", json={"version_id": art.id})
    assert link.status_code == 200, link.text
    for who in PEOPLE[:-1]:
        accounts.set_role("p", who, "read")
    hook = root.post(
        "/registries/models/webhooks",
        json={"url": "http://127.0.0.1:9/hook", "events": ["webhook.test"]},
    )
    assert hook.status_code == 201, hook.text
    return World(keys, art.id, hook.json()["webhook"]["id"], root)


def expected(route: Route, who: str) -> int | None:
    """None: allowed (2xx); else the refusal status."""
    if route.need == "any":
        return None
    if route.need == "server":
        return None if who == "root" else 403
    if who == "stranger":
        return route.stranger
    need = {"viewer": 1, "member": 2, "maintainer": 3, "admin": 4}[route.need]
    return None if RANK[who] >= need else route.below


def _send(client: Raw, route: Route, method: str, template: str, w: World) -> httpx.Response:
    values = {
        "registry": "models",
        "collection": "clf",
        "ref": "v0",
        "member": "extra",
        "version_id": str(w.version_id),
        "webhook_id": str(w.webhook_id),
    }
    if route.setup is not None:
        values.update(route.setup(w))
    path = re.sub(r"\{(\w+)\}", lambda m: values[m[1]], template) + route.query
    return client.call(method, path, json=route.body(w) if route.body else None)


def test_every_registry_route_refuses_a_key_without_the_right_role(
    world: World, raw: RawFactory
) -> None:
    clients = {who: raw(key) for who, key in world.keys.items()}
    anonymous, wrong = raw(None), raw("cairn_" + "x" * 43)
    for (method, template), route in REGISTRY_MATRIX.items():
        for client in (anonymous, wrong):
            response = _send(client, route, method, template, world)
            assert response.status_code == 401, (template, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
        for who in PEOPLE:
            response = _send(clients[who], route, method, template, world)
            refusal = expected(route, who)
            if refusal is None:
                assert 200 <= response.status_code < 300, (template, who, response.text)
                if route.check is not None:
                    route.check(who, response.json())
            else:
                assert response.status_code == refusal, (template, who, response.text)
                assert response.json()["error"]["code"] in (
                    "permission_denied",
                    "registry_not_found",
                    "not_found",
                ), (template, who, response.text)


def test_only_maintainers_move_a_protected_alias_on_every_route(
    world: World, raw: RawFactory
) -> None:
    """The protected alias ``production``: set on a new link, added, removed, or dropped with an
    unlink; members are refused (403, nothing changes), maintainers and admins may."""
    root = world.admin

    def holder() -> int | None:
        r = root.get("/registries/models/collections/clf/versions/production")
        return r.json()["version"] if r.status_code == 200 else None

    for who in PEOPLE[1:]:
        client = raw(world.keys[who])
        allowed = RANK[who] >= RANK["maintainer"]
        before = holder()
        linked = client.post(
            "/registries/models/collections/clf/links",
            json={"version_id": world.version_id, "aliases": ["production"]},
        )
        if who == "viewer":
            assert linked.status_code == 403
            continue
        if not allowed:
            assert linked.status_code == 403 and "protected" in linked.text, linked.text
            assert holder() == before
            made = root.post(
                "/registries/models/collections/clf/links",
                json={"version_id": world.version_id, "aliases": ["production"]},
            )
            number = made.json()["version"]
            for method, path, body in (
                ("POST", f"versions/v{number}/aliases", {"remove": ["production"]}),
                ("DELETE", f"versions/v{number}", None),
            ):
                r = client.call(method, f"/registries/models/collections/clf/{path}", json=body)
                assert r.status_code == 403 and "protected" in r.text, (path, r.text)
                assert holder() == number
            continue
        assert linked.status_code == 200, (who, linked.text)
        number = linked.json()["version"]
        assert holder() == number
        removed = client.post(
            f"/registries/models/collections/clf/versions/v{number}/aliases",
            json={"remove": ["production"]},
        )
        assert removed.status_code == 200 and holder() is None, removed.text
