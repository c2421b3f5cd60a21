"""Registries through a real server: per-registry roles, protected aliases (a member moving one
gets a 403 and nothing changes), visibility, search over HTTP with hostile input, and the audit
log (who, when, where, before/after; administrators only)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa
from server_helpers import Raw

import cairn
from cairn.core.digest import hash_bytes
from cairn.errors import PermissionDeniedError, RegistryNotFoundError
from cairn.server.backfill import bind_unbound_links
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts

RawFactory = Callable[[str | None], Raw]
UseServer = Callable[[str | None], None]


@dataclass
class Setup:
    keys: dict[str, str]
    first: int
    second: int


@pytest.fixture
def setup(accounts: Accounts, use_server: UseServer, raw: RawFactory, tmp_path: Path) -> Setup:
    """root (server admin) made registry 'models' (production protected) and linked p/clf:v0
    as production; maint is its maintainer, member a member, viewer a viewer; stranger has no
    role. member and maint may read project p."""
    keys = {}
    accounts.create_user("root", admin=True)
    for name in ("maint", "member", "viewer", "stranger"):
        accounts.create_user(name)
    for name in ("root", "maint", "member", "viewer", "stranger"):
        keys[name] = accounts.create_key(name)[1]
    use_server(keys["root"])
    ids = []
    with cairn.init(project="p") as run:
        for i in range(2):
            (tmp_path / f"m{i}").write_text(str(i))
            art = run.log_artifact(tmp_path / f"m{i}", name="clf", type="model")
            ids.append(art.id)
    root = raw(keys["root"])
    made = root.post("/registries", json={"name": "models", "protected_aliases": ["production"]})
    assert made.status_code == 201, made.text
    for member, role in (("maint", "maintainer"), ("member", "member"), ("viewer", "viewer")):
        r = root.call("PUT", f"/registries/models/members/{member}", json={"role": role})
        assert r.status_code == 200, r.text
    link = root.post(
        "/registries/models/collections/clf/links",
        json={"version_id": ids[0], "aliases": ["production"]},
    )
    assert link.status_code == 200, link.text
    accounts.set_role("p", "member", "read")
    accounts.set_role("p", "maint", "read")
    return Setup(keys, ids[0], ids[1])


def production(client: Raw) -> int:
    r = client.get("/registries/models/collections/clf/versions/production")
    assert r.status_code == 200, r.text
    target: int = r.json()["target"]["id"]
    return target


def test_a_member_moving_a_protected_alias_is_refused(setup: Setup, raw: RawFactory) -> None:
    member = raw(setup.keys["member"])
    linked = member.post(
        "/registries/models/collections/clf/links",
        json={"version_id": setup.second, "aliases": ["staging"]},
    )
    assert linked.status_code == 200 and linked.json()["version"] == 1
    for method, path, body in [
        ("POST", "/registries/models/collections/clf/versions/v1/aliases", {"add": ["production"]}),
        (
            "POST",
            "/registries/models/collections/clf/versions/v0/aliases",
            {"remove": ["production"]},
        ),
        ("DELETE", "/registries/models/collections/clf/versions/v0", None),
        (
            "POST",
            "/registries/models/collections/clf/links",
            {"version_id": setup.second, "aliases": ["production"]},
        ),
    ]:
        r = member.call(method, path, json=body)
        assert r.status_code == 403, (path, r.text)
        assert r.json()["error"]["code"] == "permission_denied"
        assert "protected in registry 'models'" in r.json()["error"]["message"]
    assert production(member) == setup.first  # nothing changed
    maint = raw(setup.keys["maint"])
    r = maint.post(
        "/registries/models/collections/clf/versions/v1/aliases", json={"add": ["production"]}
    )
    assert r.status_code == 200, r.text
    assert production(member) == setup.second


def test_roles_decide_who_reads_links_and_administers(setup: Setup, raw: RawFactory) -> None:
    viewer, stranger, member = (raw(setup.keys[n]) for n in ("viewer", "stranger", "member"))
    assert production(viewer) == setup.first
    refused = viewer.post(
        "/registries/models/collections/clf/links", json={"version_id": setup.second}
    )
    assert refused.status_code == 403
    for path in ("/registries/models", "/registries/models/collections/clf/versions/latest"):
        assert stranger.get(path).status_code == 404
    assert stranger.get("/registries").json()["items"] == []
    assert [r["name"] for r in viewer.get("/registries").json()["items"]] == ["models"]
    assert (
        member.call("PUT", "/registries/models/members/x", json={"role": "admin"}).status_code
        == 403
    )
    assert member.call("PATCH", "/registries/models", json={"description": "x"}).status_code == 403
    assert member.post("/registries", json={"name": "mine"}).status_code == 403
    # viewer cannot read project p, so cannot link its versions even with a member role
    root = raw(setup.keys["root"])
    root.call("PUT", "/registries/models/members/viewer", json={"role": "member"})
    hidden = viewer.post(
        "/registries/models/collections/clf/links", json={"version_id": setup.second}
    )
    assert hidden.status_code == 404


def test_the_sdk_gets_the_same_errors(setup: Setup, use_server: UseServer) -> None:
    use_server(setup.keys["member"])
    api = cairn.Api(project="p")
    with pytest.raises(PermissionDeniedError, match="protected"):
        api.set_aliases("models/clf:v0", remove=["production"])
    assert api.artifact("models/clf:production").id == setup.first
    use_server(setup.keys["stranger"])
    with pytest.raises(RegistryNotFoundError):
        cairn.Api().registry("models")


def test_search_over_http_binds_hostile_input(setup: Setup, raw: RawFactory) -> None:
    root = raw(setup.keys["root"])
    for filters in (
        '{"metadata.x\'; DROP TABLE versions; --": 1}',
        '{"version": {"$gt": "1 OR 1=1"}}',
    ):
        r = root.get("/search", params={"filters": filters, "project": "p"})
        assert r.status_code in (200, 400), r.text
        if r.status_code == 200:
            assert r.json()["items"] == []
    bad = root.get("/search", params={"filters": '{"metadata.a": {"$where": 1}}'})
    assert bad.status_code == 400 and "unknown operator" in bad.json()["error"]["message"]
    assert root.get("/search", params={"filters": "[1]"}).status_code == 400
    assert (
        root.get("/search", params={"order": "-version", "project": "p"}).json()["items"][0][
            "version"
        ]
        == 1
    )
    # a member of no project sees nothing, not everything
    assert raw(setup.keys["stranger"]).get("/search").json()["items"] == []


def test_the_audit_log_records_who_when_where_what(setup: Setup, raw: RawFactory) -> None:
    maint = raw(setup.keys["maint"])
    maint.post("/registries/models/collections/clf/versions/v0/aliases", json={"add": ["best"]})
    root = raw(setup.keys["root"])
    entries = root.get("/audit").json()["items"]
    actions = [(e["action"], e["user"], e["target"]) for e in entries]
    assert ("registry.create", "root", "models") in actions
    assert ("registry.role", "root", "models:maint") in actions
    assert ("collection.link", "root", "models/clf:v0") in actions
    assert ("collection.alias", "maint", "models/clf:best") in actions
    alias = next(e for e in entries if e["target"] == "models/clf:best")
    assert (alias["before"], alias["after"], alias["address"]) == (None, "v0", "127.0.0.1")
    only = root.get("/audit", params={"user": "maint"}).json()["items"]
    assert {e["user"] for e in only} == {"maint"}
    assert maint.get("/audit").status_code == 403


def test_a_registry_viewer_downloads_what_is_linked_and_nothing_else(
    setup: Setup, use_server: UseServer, raw: RawFactory, tmp_path: Path
) -> None:
    """viewer has a role in registry 'models' and none in project p: the version linked there
    downloads byte for byte; p's other version (not linked) stays unreadable."""
    use_server(setup.keys["viewer"])
    linked = cairn.Api().artifact("models/clf:production")
    assert linked.id == setup.first
    linked.download(root=tmp_path / "dl")
    assert (tmp_path / "dl" / "m0").read_text() == "0"
    viewer = raw(setup.keys["viewer"])
    assert viewer.get(f"/objects/{hash_bytes(b'0')}").status_code == 200
    assert viewer.get(f"/objects/{hash_bytes(b'1')}").status_code == 404  # v1: not linked
    assert viewer.get(f"/versions/{setup.second}").status_code == 404
    stranger = raw(setup.keys["stranger"])
    assert stranger.get(f"/objects/{hash_bytes(b'0')}").status_code == 404


def test_links_made_before_registries_held_objects_are_bound_at_start(
    setup: Setup, raw: RawFactory, server: ServerThread
) -> None:
    services = server.app.state.services
    with services.accounts.engine.begin() as conn:  # as a database from before 0011
        conn.execute(sa.text("DELETE FROM registry_objects"))
    viewer = raw(setup.keys["viewer"])
    assert viewer.get(f"/objects/{hash_bytes(b'0')}").status_code == 404
    assert bind_unbound_links(services.objects) == 1
    assert viewer.get(f"/objects/{hash_bytes(b'0')}").status_code == 200
    assert bind_unbound_links(services.objects) == 0  # nothing left to do
