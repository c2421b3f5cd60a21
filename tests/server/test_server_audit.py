"""The audit log through a real server covers every kind of change, not only registry ones:
version edits (aliases, tags, metadata, description, deletes), users, keys, roles, and
dashboard sign-ins (failed ones too, without the key) — each with who, where and before/after."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from server_helpers import Raw

import cairn
from cairn.service.accounts import Accounts

RawFactory = Callable[[str | None], Raw]
UseServer = Callable[[str | None], None]


def _entries(root: Raw, **params: Any) -> list[dict[str, Any]]:
    r = root.get("/audit", params={"limit": 500, **params})
    assert r.status_code == 200, r.text
    items: list[dict[str, Any]] = r.json()["items"]
    return items


def test_every_kind_of_change_is_audited(
    accounts: Accounts, use_server: UseServer, raw: RawFactory, server: Any, tmp_path: Path
) -> None:
    accounts.create_user("root", admin=True)
    root_key = accounts.create_key("root")[1]
    root = raw(root_key)
    # users, keys and roles, made through the API by an administrator
    assert root.post("/users", json={"name": "ann"}).status_code == 201
    made = root.post("/users/ann/keys", json={"label": "laptop"})
    assert made.status_code == 201, made.text
    ann_key, ann_key_id = made.json()["key"], made.json()["id"]
    assert root.post("/projects", json={"name": "p"}).status_code == 201
    r = root.call("PUT", "/projects/p/members/ann", json={"role": "write"})
    assert r.status_code == 200, r.text
    # ann logs a version and edits it
    use_server(ann_key)
    (tmp_path / "m").write_text("weights")
    with cairn.init(project="p") as run:
        art = run.log_artifact(tmp_path / "m", name="clf", type="model")
    ann = raw(ann_key)
    assert ann.post(f"/versions/{art.id}/aliases", json={"alias": "best"}).status_code == 200
    edit = ann.call("PATCH", f"/versions/{art.id}", json={"metadata": {"acc": 0.9}})
    assert edit.status_code == 200, edit.text
    # dashboard sign-ins: one with a wrong key, one with ann's
    with httpx.Client(base_url=server.url, headers={"origin": server.url}, timeout=30) as browser:
        assert (
            browser.post("/login", data={"key": "cairn_wrongkey", "next": "/"}).status_code == 401
        )
        assert browser.post("/login", data={"key": ann_key, "next": "/"}).status_code == 303
    # root takes ann's role away, revokes her key, and deletes the version
    assert root.call("DELETE", f"/versions/{art.id}", params={"force": True}).status_code == 204
    assert root.call("DELETE", "/projects/p/members/ann").status_code == 204
    assert root.call("DELETE", f"/keys/{ann_key_id}").status_code == 200

    entries = _entries(root)
    seen = {(e["action"], e["user"], e["target"]) for e in entries}
    target = f"p/clf:v{art.version.removeprefix('v')}"
    assert ("user.create", "root", "ann") in seen
    assert ("key.create", "root", f"ann:{ann_key_id}") in seen
    assert ("project.role", "root", "p:ann") in seen
    assert ("version.created", "ann", target) in seen
    assert ("version.aliases", "ann", target) in seen
    assert ("version.metadata", "ann", target) in seen
    assert ("version.deleted", "root", target) in seen
    assert ("session.sign_in", "ann", "ann") in seen
    assert ("key.revoke", "root", f"ann:{ann_key_id}") in seen

    def one(action: str, target: str) -> dict[str, Any]:
        return next(e for e in entries if e["action"] == action and e["target"] == target)

    aliases = one("version.aliases", target)
    assert "best" in aliases["after"] and "best" not in (aliases["before"] or [])
    assert aliases["address"] == "127.0.0.1" and aliases["project"] == "p"
    assert one("version.metadata", target)["after"] == {"acc": 0.9}
    roles = [e for e in entries if e["action"] == "project.role" and e["target"] == "p:ann"]
    assert [(e["before"], e["after"]) for e in roles] == [(None, "write"), ("write", None)]
    failed = [e for e in entries if e["action"] == "session.sign_in_failed"]
    assert len(failed) == 1 and failed[0]["address"] == "127.0.0.1"
    assert "cairn_wrongkey" not in str(entries) and ann_key not in str(entries)  # no secrets
    # filters: by user and by action prefix
    assert {e["user"] for e in _entries(root, user="ann")} == {"ann"}
    assert {e["action"] for e in _entries(root, action="key.")} == {"key.create", "key.revoke"}


def test_the_embedded_store_writes_no_audit_log(tmp_path: Path) -> None:
    """Changes on one machine (no server, no actor) are in each version's history, and the
    audit log stays empty: it records what was done on a server."""
    (tmp_path / "m").write_text("weights")
    with cairn.init(project="p") as run:
        art = run.log_artifact(tmp_path / "m", name="clf", type="model", aliases=["best"])
    from cairn.sdk.backend import get_backend

    registry = get_backend().registry
    assert [h.field for h in art.history()][:1] == ["created"]
    assert registry.audit_log() == []


def test_administration_commands_are_audited_as_this_terminal(
    accounts: Accounts, raw: RawFactory, settings: Any
) -> None:
    """`cairn server create-user` and friends change the database directly: the audit log
    names the operating-system user and host that ran them."""
    import getpass
    import socket

    from typer.testing import CliRunner

    from cairn.cli.main import app

    accounts.create_user("root", admin=True)
    root = raw(accounts.create_key("root")[1])
    url = settings.database_url
    result = CliRunner().invoke(app, ["server", "create-user", "bea", "--database-url", url])
    assert result.exit_code == 0, result.output
    result = CliRunner().invoke(
        app, ["server", "grant", "bea", "q", "write", "--database-url", url]
    )
    assert result.exit_code == 0, result.output
    who = f"cli:{getpass.getuser()}@{socket.gethostname()}"
    seen = {(e["action"], e["user"], e["target"], e["address"]) for e in _entries(root)}
    assert ("user.create", who, "bea", None) in seen
    assert ("project.role", who, "q:bea", None) in seen
