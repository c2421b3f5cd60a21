"""Webhooks through a real server: admins only, the API, the server's own delivery thread, a
restart with deliveries pending, and two server processes on one PostgreSQL."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import Raw, ServerProcess
from webhook_receiver import Receiver

from cairn.server.deps import ServerSettings
from cairn.server.testing import ServerThread
from cairn.service.accounts import Accounts
from cairn.service.sql import SqlRegistry
from cairn.service.webhooks import verify

RawFactory = Callable[[str | None], Raw]


def digest(n: int) -> str:
    return "blake3:" + f"{n:064x}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture(autouse=True)
def _fast_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CAIRN_WEBHOOK_BACKOFF", "0.05")
    monkeypatch.setenv("CAIRN_WEBHOOK_POLL", "0.1")


def test_admins_only_and_the_api(
    accounts: Accounts, raw: RawFactory, receiver: Receiver, server: ServerThread
) -> None:
    accounts.create_user("root", admin=True)
    accounts.create_user("ann")
    accounts.create_user("bob")
    keys = {u: accounts.create_key(u)[1] for u in ("root", "ann", "bob")}
    root, ann, bob = raw(keys["root"]), raw(keys["ann"]), raw(keys["bob"])
    assert root.post("/projects", json={"name": "p"}).status_code == 201
    accounts.set_role("p", "ann", "admin")
    accounts.set_role("p", "bob", "write")

    refused = bob.post("/projects/p/webhooks", json={"url": receiver.url})
    assert refused.status_code == 403, refused.text
    assert ann.post("/projects/p/webhooks", json={"url": "file:///etc/passwd"}).status_code == 400
    made = ann.post("/projects/p/webhooks", json={"url": receiver.url, "events": ["alias.*"]})
    assert made.status_code == 201, made.text
    hook, secret = made.json()["webhook"], made.json()["secret"]
    assert hook["created_by"] == "ann" and secret.startswith("whsec_")
    assert "secret" not in ann.get(f"/webhooks/{hook['id']}").json()
    assert [h["id"] for h in ann.get("/projects/p/webhooks").json()["items"]] == [hook["id"]]
    for path in (f"/webhooks/{hook['id']}", f"/webhooks/{hook['id']}/deliveries"):
        assert bob.get(path).status_code == 404  # not theirs to see
    assert bob.post(f"/webhooks/{hook['id']}/test").status_code == 404
    assert bob.call("DELETE", f"/webhooks/{hook['id']}").status_code == 404

    queued = ann.post(f"/webhooks/{hook['id']}/test")
    assert queued.status_code == 202
    (got,) = receiver.wait_for(1)  # the server's own delivery thread sent it
    assert got.event["type"] == "webhook.test" and got.event["actor"] == "ann"
    assert verify(secret, got.body, got.headers["x-cairn-signature"])

    # an alias set through the API is delivered, signed, with who did it
    reg = server.app.state.services.registry
    v0, _ = reg.commit_version("p", "clf", "model", digest=digest(1), size=1, file_count=1)
    moved = bob.post(f"/versions/{v0.id}/aliases", json={"alias": "production"})
    assert moved.status_code == 200, moved.text
    (_, got) = receiver.wait_for(2)
    assert got.event["type"] == "alias.added" and got.event["actor"] == "bob"
    assert got.event["alias"] == "production" and got.event["version"] == "v0"
    deadline = time.monotonic() + 20
    log: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        log = ann.get(f"/webhooks/{hook['id']}/deliveries").json()["items"]
        if log and all(d["status"] == "delivered" for d in log):
            break
        time.sleep(0.05)
    assert log[0]["attempts"] == 1 and log[0]["log"][0]["status_code"] == 200  # type: ignore[index]
    assert ann.call("DELETE", f"/webhooks/{hook['id']}").status_code == 204
    assert ann.get(f"/webhooks/{hook['id']}").status_code == 404


def test_a_restart_with_deliveries_pending_loses_none(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    settings = ServerSettings(database_url=postgres_url, store=tmp_path / "store")
    with SqlRegistry(postgres_url) as reg:
        from cairn.service.sql.webhooks import WebhookStore

        hooks = WebhookStore(reg.engine)
        hook, _ = hooks.add(receiver.url, project="p")
        receiver.answers = [503] * 3  # down for a while
        with ServerThread(settings):
            for n in range(3):
                reg.commit_version("p", "clf", "model", digest=digest(n), size=1, file_count=1)
            receiver.wait_for(1)
        # the server stopped with deliveries pending (retries due later); more changes meanwhile
        for n in range(3, 6):
            reg.commit_version("p", "clf", "model", digest=digest(n), size=1, file_count=1)
        assert {d.status for d in hooks.deliveries(hook.id)} != {"delivered"}
        with ServerThread(settings):
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                if {d.status for d in hooks.deliveries(hook.id)} == {"delivered"}:
                    break
                time.sleep(0.05)
        found = hooks.deliveries(hook.id)
    assert len(found) == 6 and {d.status for d in found} == {"delivered"}
    delivered = {r.event["id"] for r in receiver.requests}
    assert delivered == {d.event_id for d in found}


def test_two_server_processes_on_one_postgresql_deliver_each_event_once(
    tmp_path: Path, postgres_url: str, receiver: Receiver
) -> None:
    env = dict(os.environ)
    with SqlRegistry(postgres_url) as reg:
        from cairn.service.sql.webhooks import WebhookStore

        hooks = WebhookStore(reg.engine)
        hook, _ = hooks.add(receiver.url, project="p", events=["version.created"])
        servers = [ServerProcess(postgres_url, tmp_path / "store", env=env) for _ in range(2)]
        try:
            for n in range(30):
                reg.commit_version("p", "clf", "model", digest=digest(n), size=1, file_count=1)
            got = receiver.wait_for(30, timeout=60)
            time.sleep(1.0)  # room for a duplicate to show up
        finally:
            for s in servers:
                s.stop()
        workers = Counter(a["worker"] for d in hooks.deliveries(hook.id, limit=100) for a in d.log)
    assert len(got) >= 30
    counts = Counter(r.event["id"] for r in receiver.requests)
    assert len(counts) == 30 and set(counts.values()) == {1}
    assert sum(workers.values()) == 30


@pytest.fixture
def slow_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """A delivery worker that looks for due deliveries only once an hour by itself."""
    monkeypatch.setenv("CAIRN_WEBHOOK_POLL", "3600")


def test_a_commit_wakes_the_delivery_worker_of_its_process(
    slow_poll: None, accounts: Accounts, server: ServerThread, receiver: Receiver
) -> None:
    """The server's worker wakes when a change is committed in its own process, not at its
    next poll (an hour away here): every event arrives while the receiver still waits."""
    services = server.app.state.services
    from cairn.service.sql.webhooks import WebhookStore

    WebhookStore(services.registry.engine).add(receiver.url, project="p")
    for n in range(3):
        services.registry.commit_version(
            "p", "clf", "model", digest=digest(n), size=1, file_count=1
        )
        got = receiver.wait_for(n + 1, timeout=30)
        assert len(got) == n + 1, f"event {n} waited for the worker's poll"
    assert httpx.get(server.url + "/api/v1/health").status_code == 200
