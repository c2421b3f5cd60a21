"""Webhooks on the service (SQLite and PostgreSQL), with a real receiver on loopback: events
enqueued in the transaction of the change, signed deliveries, retries with one idempotency key,
a restart with deliveries pending, two workers on one PostgreSQL, refused URLs, redirects."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from webhook_receiver import Receiver

from cairn.errors import InvalidInputError, StateError
from cairn.service.sql import SqlRegistry
from cairn.service.sql.webhooks import WebhookStore
from cairn.service.webhooks import SIGNATURE_HEADER, WebhookWorker, verify


def digest(n: int) -> str:
    return "blake3:" + f"{n:064x}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def registry(database_url: str) -> Iterator[SqlRegistry]:
    with SqlRegistry(database_url) as reg:
        yield reg


def worker(reg: SqlRegistry, **kw: float) -> WebhookWorker:
    return WebhookWorker(reg.engine, backoff=kw.pop("backoff", 0.05), poll=0.05, timeout=5, **kw)  # type: ignore[arg-type]


def log(reg: SqlRegistry, n: int, aliases: tuple[str, ...] = ()) -> int:
    info, _ = reg.commit_version(
        "p", "clf", "model", digest=digest(n), size=1, file_count=1, aliases=aliases, user="ann"
    )
    return info.id


def test_events_are_queued_with_the_change_and_delivered_signed(
    registry: SqlRegistry, receiver: Receiver
) -> None:
    hooks = WebhookStore(registry.engine)
    log(registry, 0)  # before any webhook: nothing queued
    hook, secret = hooks.add(receiver.url, project="p", user="ann")
    v1 = log(registry, 1, ("production",))
    v2 = log(registry, 2)
    registry.add_alias(v2, "production", user="bob")
    registry.update_version(v2, metadata={"acc": 0.9}, description="better")
    registry.remove_alias(v2, "production")
    registry.delete_version(v1)
    with pytest.raises(StateError):  # a change that fails queues nothing
        registry.update_version(v1, description="x")
    w = worker(registry)
    assert w.run_once() == 8
    got = receiver.wait_for(8)
    events = [r.event for r in got]
    types = [e["type"] for e in events]
    assert types == [
        "version.created",
        "alias.added",
        "version.created",
        "alias.moved",
        "version.description",
        "version.metadata",
        "alias.removed",
        "version.deleted",
    ]
    moved = next(e for e in events if e["type"] == "alias.moved")
    assert moved["alias"] == "production" and moved["before"] == "v1" and moved["after"] == "v2"
    assert moved["actor"] == "bob" and moved["project"] == "p" and moved["artifact"] == "clf"
    assert moved["digest"] == digest(2) and moved["version_id"] == v2
    for r in got:
        assert verify(secret, r.body, r.headers[SIGNATURE_HEADER.lower()])
        assert not verify("whsec_wrong-secret-wrong", r.body, r.headers[SIGNATURE_HEADER.lower()])
    assert len({r.headers["idempotency-key"] for r in got}) == len(got)
    log_ = hooks.deliveries(hook.id)
    assert all(d.status == "delivered" and d.attempts == 1 for d in log_)
    assert all(d.log[0]["status_code"] == 200 for d in log_)


def test_fails_twice_then_succeeds_with_one_idempotency_key(
    registry: SqlRegistry, receiver: Receiver
) -> None:
    hooks = WebhookStore(registry.engine)
    hook, _ = hooks.add(receiver.url, project="p", events=["version.created"])
    receiver.answers = [500, 503]
    log(registry, 1)
    w = worker(registry).start()
    try:
        got = receiver.wait_for(3)
    finally:
        w.stop()
    assert len(got) == 3
    assert len({r.headers["idempotency-key"] for r in got}) == 1
    assert len({r.body for r in got}) == 1
    (delivery,) = hooks.deliveries(hook.id)
    assert delivery.status == "delivered" and delivery.attempts == 3
    assert [a["status_code"] for a in delivery.log] == [500, 503, 200]
    assert delivery.log[0]["error"] == "HTTP 500"


def test_gives_up_after_the_limit(registry: SqlRegistry, receiver: Receiver) -> None:
    hooks = WebhookStore(registry.engine)
    hook, _ = hooks.add(receiver.url, project="p")
    receiver.answers = [500] * 10
    log(registry, 1)
    w = worker(registry, max_attempts=3, backoff=0.01)
    for _ in range(100):
        w.run_once()
        if hooks.deliveries(hook.id)[0].status == "failed":
            break
        threading.Event().wait(0.02)
    (delivery,) = hooks.deliveries(hook.id)
    assert delivery.status == "failed" and delivery.attempts == 3
    assert len(receiver.requests) == 3


def test_deliveries_pending_across_a_restart_are_not_lost(
    database_url: str, receiver: Receiver
) -> None:
    with SqlRegistry(database_url) as reg:
        hooks = WebhookStore(reg.engine)
        hook, _ = hooks.add(receiver.url, project="p")
        for n in range(5):
            log(reg, n)
        # a worker claimed some and died mid-delivery (its lease runs out)
        hooks.claim(2, lease=0.0)
    assert receiver.requests == []
    with SqlRegistry(database_url) as reg:
        worker(reg).run_once()
        hooks = WebhookStore(reg.engine)
        assert {d.status for d in hooks.deliveries(hook.id)} == {"delivered"}
    assert len(receiver.wait_for(5)) == 5
    assert len({r.event["id"] for r in receiver.requests}) == 5


def test_only_http_urls_and_known_events(registry: SqlRegistry) -> None:
    hooks = WebhookStore(registry.engine)
    for url in ("file:///etc/passwd", "ftp://example.com/x", "gopher://h/", "http:///nohost", "x"):
        with pytest.raises(InvalidInputError, match="http"):
            hooks.add(url, project="p")
    with pytest.raises(InvalidInputError, match="unknown event"):
        hooks.add("http://127.0.0.1/x", project="p", events=["version.exploded"])
    with pytest.raises(InvalidInputError, match="one"):
        hooks.add("http://127.0.0.1/x", project="p", registry="models")


def test_redirects_are_not_followed(registry: SqlRegistry, receiver: Receiver) -> None:
    hooks = WebhookStore(registry.engine)
    receiver.redirect_to = receiver.url.replace("/hook", "/elsewhere")
    hook, _ = hooks.add(receiver.url, project="p")
    log(registry, 1)
    # a retry far off: on a loaded machine one pass could outlast a short backoff and retry
    worker(registry, backoff=60).run_once()
    assert [r.path for r in receiver.requests] == ["/hook"]
    (delivery,) = hooks.deliveries(hook.id)
    assert delivery.status == "pending" and delivery.last_status_code == 302
    assert "redirects are not followed" in (delivery.last_error or "")


def test_test_event_and_removal(registry: SqlRegistry, receiver: Receiver) -> None:
    hooks = WebhookStore(registry.engine)
    hook, secret = hooks.add(receiver.url, project="p")
    queued = hooks.send_test(hook.id, user="ann")
    worker(registry).run_once()
    (got,) = receiver.wait_for(1)
    assert got.event["type"] == "webhook.test" and got.event["actor"] == "ann"
    assert got.headers["idempotency-key"] == queued.idempotency_key
    assert verify(secret, got.body, got.headers["x-cairn-signature"])
    hooks.remove(hook.id)
    assert hooks.list_webhooks(project="p") == []
    log(registry, 3)
    assert worker(registry).run_once() == 0


def test_registry_collection_alias_events(registry: SqlRegistry, receiver: Receiver) -> None:
    hooks = WebhookStore(registry.engine)
    registry.create_registry("models", user="root")
    hook, _ = hooks.add(receiver.url, registry="models", events=["alias.*"])
    v1, v2 = log(registry, 1), log(registry, 2)
    registry.link_version("models", "clf", v1, aliases=["production"])
    registry.link_version("models", "clf", v2, aliases=["production"])
    worker(registry).run_once()
    events = [r.event for r in receiver.wait_for(2)]
    assert len(events) == 2  # `latest` moves by itself: no event
    production = [e for e in events if e["alias"] == "production"]
    assert [e["type"] for e in production] == ["alias.added", "alias.moved"]
    assert production[1]["before"] == "v0" and production[1]["after"] == "v1"
    assert production[1]["registry"] == "models" and production[1]["collection"] == "clf"
    assert production[1]["digest"] == digest(2)
    assert production[1]["source"] == {"project": "p", "artifact": "clf", "version": "v1"}
    assert {d.event_type for d in hooks.deliveries(hook.id)} <= {"alias.added", "alias.moved"}


def test_two_workers_on_one_postgresql_deliver_each_event_once(
    postgres_url: str, receiver: Receiver
) -> None:
    with SqlRegistry(postgres_url) as a, SqlRegistry(postgres_url) as b:
        hooks = WebhookStore(a.engine)
        hooks.add(receiver.url, project="p", events=["version.created"])
        for n in range(40):
            log(a, n)
        workers = [worker(a, batch=3), worker(b, batch=3)]  # type: ignore[arg-type]
        threads = [threading.Thread(target=w.run_once) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        got = receiver.wait_for(40)
        ids = [r.event["id"] for r in got]
        assert len(ids) == 40 and len(set(ids)) == 40
        by_worker = {r["worker"] for d in hooks.deliveries(1, limit=100) for r in d.log}
        assert len(by_worker) >= 1


def test_finished_deliveries_are_pruned_pending_ones_kept(
    registry: SqlRegistry, receiver: Receiver
) -> None:
    from datetime import timedelta

    from cairn.service.sql.common import utcnow

    hooks = WebhookStore(registry.engine)
    hook, _ = hooks.add(receiver.url, project="p")
    log(registry, 1)
    worker(registry).run_once()
    receiver.answers = [500]
    log(registry, 2)
    worker(registry, backoff=3600).run_once()  # fails: pending for an hour
    assert sorted(d.status for d in hooks.deliveries(hook.id)) == ["delivered", "pending"]
    assert hooks.prune(utcnow() - timedelta(days=1)) == 0  # too recent
    assert hooks.prune(utcnow() + timedelta(seconds=1)) == 1
    assert [d.status for d in hooks.deliveries(hook.id)] == ["pending"]
