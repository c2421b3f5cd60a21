"""Accounts and permissions: every route refuses a key without the right role, a key sees only
its user's projects, objects are readable only through a project, history names the user."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import Raw, frames
from test_server_registry_permissions import ROUTES as REGISTRY_ROUTES

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import AuthenticationError, PermissionDeniedError, ProjectNotFoundError
from cairn.sdk.backend import get_backend
from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts
from cairn.wire import OBJECTS_TYPE

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
    diff_run: str  # a run of p with a recorded code diff
    admin: Raw  # root's client, to set things up between calls
    webhook_id: int = 0  # a webhook of project p (the dashboard's webhook pages)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture
def settings(tmp_path: Path, postgres_url: str) -> ServerSettings:
    """The matrix sends a wrong key to every route: no rate limit here (tested on its own in
    test_server_security)."""
    return ServerSettings(
        database_url=postgres_url, store=tmp_path / "server-store", auth_failures=0
    )


@pytest.fixture
def world(accounts: Accounts, use_server: UseServer, tmp_path: Path, raw: RawFactory) -> World:
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
    owner = raw(keys["owner"])
    assert owner.upload([DIFF]).status_code == 200
    diff_run = owner.post("/projects/p/runs", json={"git_diff_digest": hash_bytes(DIFF)})
    assert diff_run.status_code == 201, diff_run.text
    accounts.create_user("extra")
    accounts.set_role("p", "writer", "write")
    accounts.set_role("p", "reader", "read")
    extra = accounts.create_key("reader", "spare")[0]
    # registry 'models' (collection 'clf' links p/data:v0), its roles mirroring p's: reader a
    # viewer, writer a member, owner an admin (the dashboard's registry pages)
    root = raw(keys["root"])
    assert root.post("/registries", json={"name": "models"}).status_code == 201
    for who, role in (("reader", "viewer"), ("writer", "member"), ("owner", "admin")):
        assert root.call("PUT", f"/registries/models/members/{who}", json={"role": role}).is_success
    linked = root.post("/registries/models/collections/clf/links", json={"version_id": art.id})
    assert linked.status_code == 200, linked.text
    return World(
        keys,
        run.id,
        art.id,
        art.digest,
        b"alpha",
        extra.id,
        diff_run.json()["id"],
        raw(keys["root"]),
        _fresh_webhook_id(root),
    )


def _fresh_webhook_id(root: Raw) -> int:
    made = root.post(
        "/projects/p/webhooks", json={"url": "http://127.0.0.1:9/hook", "events": ["webhook.test"]}
    )
    assert made.status_code == 201, made.text
    found: int = made.json()["webhook"]["id"]
    return found


def _fresh_link(w: World) -> dict[str, str]:
    """p/data:v0 linked into models/clf (again, after an unlink): its collection version."""
    made = w.admin.post(
        "/registries/models/collections/clf/links", json={"version_id": w.version_id}
    )
    assert made.status_code == 200, made.text
    return {"ref": f"v{made.json()['version']}"}


def _fresh_webhook(w: World) -> dict[str, str]:
    """A new webhook of p (added by root) for a call that removes it."""
    return {"webhook_id": str(_fresh_webhook_id(w.admin))}


DIFF = b"diff --git a/train.py b/train.py\n+lr = 0.1\n"
NEW_BYTES = count()


@dataclass(frozen=True)
class Route:
    """Who may call a route. ``need``: none (no key at all) | any (any valid key) | read |
    write | admin (a role in project p) | server (server administrators) | self (the user the
    path names: reader) | writer-somewhere (write access to some project) | direct (a bucket
    store in direct mode: a folder server refuses everyone with 409; who may use them is
    tested in test_server_bucket_store). ``stranger``: what a user without a role in p gets
    (404 hides the project, 403 refuses)."""

    need: str
    stranger: int = 404
    body: Callable[[World], Any] | None = None
    content: Callable[[], bytes] | None = None  # a raw body instead of JSON
    query: str = ""
    check: Callable[[World, str, Any], None] | None = None  # more about a 2xx answer
    label: str = ""  # "aliases" or "tags": the {alias}/{tag} is added (by root) before each call
    below: int = 403  # what a user with a role in p below ``need`` gets
    fresh: Callable[[World], dict[str, str]] | None = None  # path values made before each call


def _fresh_object() -> bytes:
    return f"bytes #{next(NEW_BYTES)} nobody sent before".encode()


def _framed() -> bytes:
    return frames([_fresh_object()])


def _only_readable_versions(w: World, who: str, answer: Any) -> None:
    ids = [v["id"] for v in answer["items"]]
    assert ids == ([] if who == "stranger" else [w.version_id]), (who, answer)


_names = count()
API = "/api/v1"
PARTS = "/projects/{project}/artifacts/{name}/parts/{distributed_id}"
# every API route: (method, path as the app declares it) -> who may call it
API_MATRIX: dict[tuple[str, str], Route] = {
    ("GET", "/health"): Route("none"),
    ("GET", "/ready"): Route("none"),
    ("GET", "/openapi.json"): Route("none"),
    ("GET", "/docs"): Route("none"),
    ("GET", "/info"): Route("any", 200),
    ("GET", "/me"): Route("any", 200),
    ("GET", "/projects"): Route("any", 200),
    ("GET", "/projects/{project}/runs"): Route("read"),
    ("POST", "/projects/{project}/runs"): Route("write", 403, lambda w: {"notes": "x"}),
    ("GET", "/runs/{run_id}"): Route("read"),
    ("PATCH", "/runs/{run_id}"): Route("write", 404, lambda w: {"notes": "edited"}),
    ("GET", "/runs/{run_id}/metrics"): Route("read"),
    ("POST", "/runs/{run_id}/metrics"): Route(
        "write", 404, lambda w: {"rows": [[1, {"loss": 0.5}]]}
    ),
    ("GET", "/runs/{run_id}/inputs"): Route("read"),
    ("POST", "/runs/{run_id}/inputs"): Route("write", 404, lambda w: {"version_id": w.version_id}),
    ("GET", "/runs/{run_id}/outputs"): Route("read"),
    ("GET", "/projects/{project}/artifacts"): Route("read"),
    ("GET", "/projects/{project}/artifacts/{name}/versions"): Route("read"),
    ("POST", "/projects/{project}/artifacts/{name}/versions"): Route(
        "write", 403, lambda w: {"type": "dataset", "digest": w.tree, "size": 9, "file_count": 2}
    ),
    ("GET", "/projects/{project}/artifacts/{name}/versions/{ref}"): Route("read"),
    ("GET", "/projects/{project}/artifacts/{name}"): Route("read"),
    ("PATCH", "/projects/{project}/artifacts/{name}"): Route(
        "write", 403, lambda w: {"description": "x"}
    ),
    ("GET", "/versions"): Route("any", 200, query="?digest={tree}", check=_only_readable_versions),
    ("GET", "/versions/{version_id}"): Route("read"),
    ("PATCH", "/versions/{version_id}"): Route("write", 404, lambda w: {"aliases": ["best", "x"]}),
    ("POST", "/versions/{version_id}/aliases"): Route(
        "write", body=lambda w: {"alias": f"a{next(_names)}"}
    ),
    ("DELETE", "/versions/{version_id}/aliases/{alias}"): Route("write", label="aliases"),
    ("POST", "/versions/{version_id}/tags"): Route(
        "write", body=lambda w: {"tag": f"t{next(_names)}"}
    ),
    ("DELETE", "/versions/{version_id}/tags/{tag}"): Route("write", label="tags"),
    ("GET", "/versions/{version_id}/history"): Route("read"),
    ("GET", "/versions/{version_id}/logged-by"): Route("read"),
    ("GET", "/versions/{version_id}/used-by"): Route("read"),
    ("GET", "/versions/{version_id}/lineage"): Route("read"),
    ("GET", "/root-digests"): Route("server", 403),
    ("POST", "/objects/missing"): Route("any", 200, lambda w: {"digests": [w.tree]}),
    ("GET", "/store/generation"): Route("any", 200),
    ("POST", "/objects"): Route("writer-somewhere", 403, content=_framed),
    ("PUT", "/objects/{digest}"): Route("writer-somewhere", 403, content=_fresh_object),
    ("GET", "/objects/{digest}"): Route("read"),
    ("GET", "/objects/{digest}/subtree"): Route("read"),
    ("POST", "/objects/fetch"): Route("read", 404, lambda w: {"digests": [w.tree]}),
    ("POST", "/objects/packs"): Route("direct", body=lambda w: {"count": 1}),
    ("POST", "/objects/packs/{slot}/commit"): Route("direct", body=lambda w: {"entries": []}),
    ("POST", "/objects/locate"): Route("direct", body=lambda w: {"digests": [w.tree]}),
    ("GET", "/projects/{project}/members"): Route("read"),
    ("PUT", "/projects/{project}/members/{user}"): Route("admin", 404, lambda w: {"role": "read"}),
    ("DELETE", "/projects/{project}/members/{user}"): Route("admin"),
    ("GET", "/projects/{project}/webhooks"): Route("admin"),
    ("POST", "/projects/{project}/webhooks"): Route(
        "admin", 404, lambda w: {"url": "http://127.0.0.1:9/hook", "events": ["webhook.test"]}
    ),
    ("GET", "/versions/{version_id}/ttl"): Route("read"),
    ("PUT", "/versions/{version_id}/ttl"): Route("write", 404, lambda w: {"ttl_seconds": 0}),
    ("GET", "/projects/{project}/retention"): Route("read"),
    ("PUT", "/projects/{project}/retention"): Route("admin", 404, lambda w: {"keep_used_days": 7}),
    ("PUT", "/projects/{project}/artifacts/{name}/retention"): Route(
        "admin", 404, lambda w: {"keep_last": 5}
    ),
    ("POST", "/retention/apply"): Route("server", 403, lambda w: {"dry_run": True}),
    # distributed versions: a part (the version's tree stands in for it), then the finish
    ("PUT", PARTS + "/{part}"): Route(
        "write", 403, lambda w: {"type": "dataset", "root": w.tree, "size": 9, "file_count": 2}
    ),
    ("GET", PARTS): Route("read"),
    ("DELETE", PARTS): Route("write"),  # before the finish: it finishes exactly no part
    ("POST", PARTS + "/finish"): Route(
        "write",
        403,
        lambda w: {"type": "dataset", "parts": [], "digest": w.tree, "size": 9, "file_count": 2},
    ),
    ("GET", "/users"): Route("server", 403),
    ("POST", "/users"): Route("server", 403, lambda w: {"name": f"user-{next(_names)}"}),
    ("GET", "/users/{user}/keys"): Route("self", 403),
    ("POST", "/users/{user}/keys"): Route("self", 403, lambda w: {"label": "more"}),
    ("DELETE", "/keys/{key_id}"): Route("self", 404),
    # late: it makes every caller an admin of a project of their own
    ("POST", "/projects"): Route("any", 201, lambda w: {"name": f"fresh-{next(_names)}"}),
    ("DELETE", "/projects/{project}/artifacts/{name}"): Route("write", 403),  # destructive
    ("DELETE", "/versions/{version_id}"): Route("write", query="?force=true"),  # destructive
}
# every dashboard route, the same way (``form``: a form post from the dashboard's own pages)
HOOK_URL = "http://127.0.0.1:9/hook"
DASHBOARD_MATRIX: dict[tuple[str, str], Route] = {
    ("GET", "/static/{name}"): Route("none"),
    ("GET", "/favicon.ico"): Route("none"),
    ("GET", "/login"): Route("none"),
    ("POST", "/login"): Route("none"),
    ("GET", "/login/sso"): Route("none"),  # back to /login: no provider on this server
    ("GET", "/login/sso/callback"): Route("none"),
    ("POST", "/logout"): Route("any", 200),
    ("GET", "/docs/oauth2-redirect"): Route("none"),
    ("GET", "/"): Route("any", 200),
    ("GET", "/p/{project}"): Route("read"),
    ("GET", "/p/{project}/runs"): Route("read"),
    ("GET", "/p/{project}/storage"): Route("read"),
    ("GET", "/p/{project}/a/{name}"): Route("read"),
    ("POST", "/p/{project}/a/{name}/description"): Route(
        "write", body=lambda w: {"description": "edited"}
    ),
    ("GET", "/p/{project}/a/{name}/v/{ref}"): Route("read"),
    ("POST", "/p/{project}/a/{name}/v/{ref}/ttl"): Route("write", body=lambda w: {"ttl": "30d"}),
    ("POST", "/p/{project}/a/{name}/v/{ref}/description"): Route(
        "write", body=lambda w: {"description": "edited"}
    ),
    ("POST", "/p/{project}/a/{name}/v/{ref}/aliases"): Route(
        "write", body=lambda w: {"alias": f"a{next(_names)}"}
    ),
    ("POST", "/p/{project}/a/{name}/v/{ref}/tags"): Route(
        "write", body=lambda w: {"tag": f"t{next(_names)}"}
    ),
    ("GET", "/p/{project}/a/{name}/v/{ref}/files"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/files/{path:path}"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/raw/{path:path}"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/archive"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/usage"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/history"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/lineage"): Route("read"),
    ("GET", "/p/{project}/a/{name}/v/{ref}/compare"): Route("read"),
    ("GET", "/p/{project}/r/{run_id}"): Route("read"),
    ("GET", "/p/{project}/r/{run_id}/diff"): Route("read"),
    ("POST", "/p/{project}/r/{run_id}/notes"): Route("write", body=lambda w: {"notes": "edited"}),
    ("POST", "/p/{project}/a/{name}/v/{ref}/metadata"): Route(
        "write", body=lambda w: {"metadata": '{"edited": true}'}
    ),
    # unconfirmed (no "confirm" field): refused with a 303 back to the version, nothing deleted
    ("POST", "/p/{project}/a/{name}/v/{ref}/delete"): Route("write"),
    # registries: p's roles mirrored in registry 'models' (see world)
    ("GET", "/registries"): Route("any", 200),
    ("GET", "/registries/{registry}"): Route("read"),
    ("GET", "/registries/{registry}/c/{collection}"): Route("read"),
    ("POST", "/registries/{registry}/members"): Route(
        "admin", body=lambda w: {"member": "extra", "role": "viewer"}
    ),
    ("POST", "/registries/{registry}/settings"): Route(
        "admin", body=lambda w: {"description": "edited", "protected_aliases": ""}
    ),
    # editing a collection needs a member ('write' here); linking, also read access to p
    ("POST", "/registries/{registry}/c/{collection}/v/{ref}/aliases"): Route(
        "write", body=lambda w: {"alias": f"a{next(_names)}"}, fresh=_fresh_link
    ),
    ("POST", "/registries/{registry}/c/{collection}/v/{ref}/unlink"): Route(
        "write", fresh=_fresh_link
    ),
    ("POST", "/p/{project}/a/{name}/v/{ref}/link"): Route(
        "write", body=lambda w: {"registry": "models", "collection": "clf"}
    ),
    ("GET", "/audit"): Route("server"),
    ("GET", "/audit/export"): Route("server"),
    # webhooks: of project p, and of registry 'models' (owner is its admin); one that you do not
    # administer does not exist for you
    ("GET", "/p/{project}/webhooks"): Route("admin"),
    ("POST", "/p/{project}/webhooks"): Route("admin", body=lambda w: {"url": HOOK_URL}),
    ("GET", "/registries/{registry}/webhooks"): Route("admin"),
    ("POST", "/registries/{registry}/webhooks"): Route("admin", body=lambda w: {"url": HOOK_URL}),
    ("GET", "/webhooks/{webhook_id}"): Route("admin", below=404),
    ("POST", "/webhooks/{webhook_id}/test"): Route("admin", below=404),
    ("POST", "/webhooks/{webhook_id}/remove"): Route("admin", below=404, fresh=_fresh_webhook),
}
RANK = {"reader": 1, "writer": 2, "owner": 3, "root": 4}
PEOPLE = ("stranger", "reader", "writer", "owner", "root")


def route_table(app: Any) -> set[tuple[str, str]]:
    """(method, path) of every route the app serves (HEAD, which Starlette adds to GET, left
    out): the API's and the dashboard's, however their routers are included."""
    found: set[tuple[str, str]] = set()
    for route in app.routes:
        nested = getattr(route, "effective_route_contexts", None)  # FastAPI >= 0.16x
        entries = (
            [(c.original_route, c.path) for c in nested()]
            if nested is not None
            else [(route, getattr(route, "path", ""))]
        )
        for inner, path in entries:
            for method in getattr(inner, "methods", None) or ():
                if method != "HEAD":
                    found.add((method, path))
    return found


def test_every_route_is_in_the_permission_matrix(server: ServerThread) -> None:
    # the registry, search, audit and registry-webhook routes: their matrix is in
    # test_server_registry_permissions (registries have roles of their own)
    declared = {(m, API + p) for m, p in API_MATRIX} | set(DASHBOARD_MATRIX) | REGISTRY_ROUTES
    served = route_table(server.app)
    assert served - declared == set(), "routes with no entry in the permission matrix"
    assert declared - served == set(), "matrix entries for routes the app does not serve"


def expected(route: Route, who: str) -> int | None:
    """None: allowed (2xx); else the refusal status."""
    if route.need in ("none", "any"):
        return None
    if route.need == "direct":
        return 409
    if route.need == "server":
        return None if who == "root" else 403
    if route.need == "self":
        return None if who in ("root", "reader") else route.stranger
    if route.need == "writer-somewhere":
        return None if who in ("writer", "owner", "root") else 403
    if who == "stranger":
        return route.stranger
    need = {"read": 1, "write": 2, "admin": 3}[route.need]
    return None if RANK[who] >= need else route.below


def _fill(path: str, w: World) -> str:
    values = {
        "project": "p",
        "run_id": w.diff_run if path.endswith(("/diff", "/metrics")) else w.run_id,
        "version_id": str(w.version_id),
        "digest": hash_bytes(w.blob),
        "key_id": str(w.extra_key_id),
        "name": "data",
        "ref": "v0",
        "user": "reader" if "/users/" in path else "extra",
        "slot": "0" * 32,
        "path:path": "a.txt",
        "tree": w.tree,
        "alias": "LABEL",
        "tag": "LABEL",
        "registry": "models",
        "collection": "clf",
        "webhook_id": str(w.webhook_id),
        "distributed_id": "job-1",
        "part": "0",
    }
    return re.sub(r"\{([\w:]+)\}", lambda m: values[m[1]], path)


def _dash_path(template: str, route: Route, w: World) -> str:
    for key, value in (route.fresh(w) if route.fresh is not None else {}).items():
        template = template.replace("{" + key + "}", value)
    return _fill(template, w)


def _send(client: Raw, route: Route, method: str, template: str, w: World) -> httpx.Response:
    path = _fill(template + route.query, w)
    if route.label:
        name = f"l{next(_names)}"
        field = route.label[:-1] if route.label == "tags" else "alias"
        added = w.admin.post(f"/versions/{w.version_id}/{route.label}", json={field: name})
        assert added.is_success, added.text
        path = path.replace("LABEL", name)
    if route.content is not None:
        data = route.content()
        if template.endswith("{digest}"):
            path = path.replace(hash_bytes(w.blob), hash_bytes(data))
        return client.call(method, path, content=data, headers={"Content-Type": OBJECTS_TYPE})
    return client.call(method, path, json=route.body(w) if route.body else None)


def test_every_api_route_refuses_a_key_without_the_right_role(
    world: World, raw: RawFactory
) -> None:
    clients = {who: raw(key) for who, key in world.keys.items()}
    anonymous, wrong = raw(None), raw("cairn_" + "x" * 43)
    for (method, template), route in API_MATRIX.items():
        for client in (anonymous, wrong):
            response = _send(client, route, method, template, world)
            if route.need == "none":
                assert response.status_code == 200, (template, response.text)
                continue
            assert response.status_code == 401, (template, response.text)
            assert response.json()["error"]["code"] == "unauthenticated"
        for who in PEOPLE:
            response = _send(clients[who], route, method, template, world)
            refusal = expected(route, who)
            if refusal is None:
                assert 200 <= response.status_code < 300, (template, who, response.text)
                if route.check is not None:
                    route.check(world, who, response.json())
            else:
                assert response.status_code == refusal, (template, who, response.text)
                assert response.json()["error"]["code"] in (
                    "permission_denied",
                    "project_not_found",
                    "run_not_found",
                    "artifact_not_found",
                    "object_not_found",
                    "not_found",
                    "invalid_state",
                ), (template, who, response.text)


def test_every_dashboard_route_refuses_a_user_without_the_right_role(
    world: World, server: ServerThread
) -> None:
    origin = {"origin": server.url}
    browsers: dict[str, httpx.Client] = {}
    try:
        for who in PEOPLE:
            web = httpx.Client(base_url=server.url, timeout=60, headers=origin)
            signed = web.post("/login", data={"key": world.keys[who], "next": "/"})
            assert signed.status_code == 303, signed.text
            browsers[who] = web
        anonymous = httpx.Client(base_url=server.url, timeout=60, headers=origin)
        browsers["anonymous"] = anonymous
        for (method, template), route in DASHBOARD_MATRIX.items():
            if template == "/logout":
                continue  # signing out is tested on its own (test_server_security)
            path = _dash_path(template, route, world)
            if template == "/static/{name}":
                path = "/static/dashboard.css"
            form = route.body(world) if route.body else None
            answer = anonymous.request(method, path, data=form, follow_redirects=False)
            if route.need == "none":
                assert answer.status_code in (200, 301, 303, 401), (template, answer.text)
            else:
                assert answer.status_code == 303, (template, answer.status_code)
                assert "/login" in answer.headers["location"]
            for who in PEOPLE:
                if route.fresh is not None:
                    path = _dash_path(template, route, world)
                answer = browsers[who].request(method, path, data=form, follow_redirects=False)
                refusal = expected(route, who)
                if route.need == "none":  # the same for everyone (a sign-in without a key: 401)
                    assert answer.status_code in (200, 301, 303, 401), (template, who)
                elif refusal is None:
                    assert answer.status_code in (200, 301, 303), (template, who, answer.text)
                    if method == "POST" and route.need == "write":
                        assert answer.status_code == 303  # done, back to the version
                else:
                    assert answer.status_code == refusal, (template, who, answer.status_code)
    finally:
        for web in browsers.values():
            web.close()


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


def test_a_new_users_first_run_in_a_changed_git_repo_records_its_diff(
    accounts: Accounts,
    use_server: UseServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A user in no project yet may not upload objects, but their first run makes a project
    theirs: the code's uncommitted changes are then stored and recorded all the same."""
    accounts.create_user("root", admin=True)
    accounts.create_user("newcomer")
    key = accounts.create_key("newcomer")[1]
    use_server(key)
    repo = tmp_path / "repo"
    repo.mkdir()

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", "-c", "user.name=T", "-c", "user.email=t@example.com", *args],
            cwd=repo, check=True, capture_output=True, text=True,
        )  # fmt: skip
        return done.stdout

    git("init", "-q")
    (repo / "train.py").write_text("lr = 0.1\n")
    git("add", "train.py")
    git("commit", "-q", "-m", "first")
    (repo / "train.py").write_text("lr = 0.01\n")
    monkeypatch.chdir(repo)
    with cairn.init(project="fresh", job_type="train") as run:
        pass
    info = cairn.Api().run(run.id).info
    assert info.git_dirty is True and info.git_diff_digest is not None
    assert cairn.Api().run(run.id).info.project == "fresh"
    stored = get_backend().object_store.get(info.git_diff_digest).decode()
    assert "+lr = 0.01" in stored and stored.rstrip("\n") == git("diff", "HEAD").rstrip("\n")
    assert accounts.roles(accounts.authenticate(key)) == {"fresh": "admin"}


def test_a_role_change_counts_from_the_next_request(
    world: World, raw: RawFactory, accounts: Accounts
) -> None:
    """The caller's role in the project a path names is read with their key, once per
    request: a grant or a removal is never served from an older answer."""
    stranger = raw(world.keys["stranger"])
    resolve = "/projects/p/artifacts/data/versions/best"
    assert stranger.get(resolve).status_code == 404
    accounts.set_role("p", "stranger", "read")
    assert stranger.get(resolve).status_code == 200
    assert stranger.post("/projects/p/runs", json={}).status_code == 403
    accounts.set_role("p", "stranger", "write")
    assert stranger.post("/projects/p/runs", json={}).status_code == 201
    accounts.remove_member("p", "stranger")
    assert stranger.get(resolve).status_code == 404
    assert stranger.post("/projects/p/runs", json={}).status_code == 403  # "belongs to others"


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
    assert stranger.upload([world.blob]).status_code == 403  # in no project: may not write
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
    # (uploading needs write access to some project: the refused log above made project 'mine'
    # theirs)
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
