"""Retention on the metadata database (SQLite and PostgreSQL): TTLs and their defaults, keep
policies and what protects a version, collection link TTLs, history and webhook events, the
one-evaluator lock, and the migration that adds it all."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from cairn.errors import ConflictError, InvalidInputError, StateError
from cairn.metadata.engine import create_engine
from cairn.service.retention import Target, changes_of, format_duration, parse_duration
from cairn.service.sql import SqlRegistry
from cairn.service.sql.common import utcnow
from cairn.service.sql.retention import RetentionScheduler, SqlRetention
from cairn.service.sql.webhooks import WebhookStore

Digest = Callable[[str], str]
DAY = 86400


def _log(
    registry: SqlRegistry, digest: Digest, n: int, *, name: str = "clf", **meta: Any
) -> list[int]:
    """Log n versions of vision/<name>; returns their ids (v0 first)."""
    ids = []
    for i in range(n):
        info, _ = registry.commit_version(
            "vision", name, "model", digest=digest(f"{name}-{i}"), size=100 + i, file_count=1,
            metadata={k: v[i] for k, v in meta.items()} if meta else None,
        )  # fmt: skip
        ids.append(info.id)
    return ids


def _live(registry: SqlRegistry, name: str = "clf") -> list[str]:
    return [v.label for v in reversed(registry.list_versions("vision", name))]


@pytest.fixture
def retention(registry: SqlRegistry) -> SqlRetention:
    return SqlRetention(registry.engine)


def test_durations_parse_and_print() -> None:
    assert parse_duration("30d") == 30 * DAY
    assert parse_duration(" 1d12h ") == 36 * 3600
    assert parse_duration("2w") == 14 * DAY
    assert parse_duration("none") == 0 and parse_duration("never") == 0
    assert format_duration(36 * 3600) == "1d12h" and format_duration(0) == "none"
    for bad in ("", "30", "3x", "-1d", "0d", "d", "1.5d", "30 days"):
        with pytest.raises(InvalidInputError, match="bad duration"):
            parse_duration(bad)


def test_an_expired_version_is_soft_deleted_with_its_reason_in_history(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    v0, v1, v2 = _log(registry, digest, 3)
    hooks = WebhookStore(registry.engine)
    hooks.add("http://127.0.0.1:9/hook", project="vision", events=["version.*"])
    info = retention.set_ttl(v0, 7 * DAY)
    assert (info.own, info.ttl, info.source) == (7 * DAY, 7 * DAY, "version")
    created = registry.get_version(v0).created_at
    assert info.expires_at == created + timedelta(days=7)

    assert retention.apply(now=utcnow() + timedelta(days=6)).removed == []
    report = retention.apply(now=utcnow() + timedelta(days=8))
    assert [(r.version, r.reason, r.rule) for r in report.removed] == [
        (0, "expired", "ttl 7d (version)")
    ]
    assert report.logical_bytes == 100
    assert registry.get_version(v0).state == "deleted"
    assert _live(registry) == ["v1", "v2"]
    fields = [(h.field, h.new) for h in registry.history(v0)]
    assert fields[-2:] == [
        ("expired", {"reason": "expired", "rule": "ttl 7d (version)"}),
        ("deleted", "deleted"),
    ]
    assert fields[-3][0] == "ttl"  # setting the TTL is in the history too
    events = [d.event_type for d in hooks.deliveries(hooks.list_webhooks(project="vision")[0].id)]
    assert "version.expired" in events and "version.deleted" in events
    # evaluating again deletes nothing more
    assert retention.apply(now=utcnow() + timedelta(days=8)).removed == []
    with pytest.raises(StateError, match="deleted"):
        retention.set_ttl(v0, DAY)
    assert {v1, v2}.isdisjoint(r.version_id for r in report.removed)


def test_ttl_defaults_come_from_the_artifact_then_the_project(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    v0, v1, v2 = _log(registry, digest, 3)
    (other,) = _log(registry, digest, 1, name="data")
    retention.set_policy(Target(project="vision"), {"ttl_seconds": 30 * DAY})
    retention.set_policy(Target(project="vision", artifact="clf"), {"ttl_seconds": 10 * DAY})
    retention.set_ttl(v1, 0)  # never, whatever the defaults say
    retention.set_ttl(v2, 40 * DAY)
    assert (retention.ttl(v0).ttl, retention.ttl(v0).source) == (10 * DAY, "artifact")
    assert (retention.ttl(v1).ttl, retention.ttl(v1).source) == (None, "version")
    assert (retention.ttl(other).ttl, retention.ttl(other).source) == (30 * DAY, "project")

    report = retention.apply(now=utcnow() + timedelta(days=31))
    assert sorted((r.artifact, r.version, r.rule) for r in report.removed) == [
        ("clf", 0, "ttl 10d (artifact)"),
        ("data", 0, "ttl 30d (project)"),
    ]
    assert _live(registry) == ["v1", "v2"]
    retention.set_ttl(v2, None)  # back to the artifact's default: long expired
    report = retention.apply(now=utcnow() + timedelta(days=31))
    assert [r.version for r in report.removed] == [2]
    assert _live(registry) == ["v1"]


def test_keep_last_and_best_delete_the_rest_but_never_a_protected_version(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    losses = [0.9, 0.8, 0.1, 0.7, 0.6, 0.5, 0.4]
    ids = _log(registry, digest, 7, val_loss=losses)
    registry.add_alias(ids[0], "production")
    registry.create_registry("models")
    registry.link_version("models", "clf", ids[1])
    run = registry.create_run("vision", job_type="eval")
    registry.record_use(run.id, ids[3])
    retention.set_policy(
        Target(project="vision", artifact="clf"),
        changes_of(keep_last=2, keep_best=1, by="val_loss", keep_used_days=7),
    )
    dry = retention.apply(dry_run=True)
    assert dry.dry_run and _live(registry) == [f"v{i}" for i in range(7)]
    report = retention.apply()
    assert [(r.version, r.reason) for r in report.removed] == [(4, "policy")]
    assert [(r.version, r.reason) for r in dry.removed] == [(4, "policy")]
    assert report.removed[0].rule == "not kept by: keep last 2, keep best 1 by val_loss asc"
    assert sorted((s.version, s.because) for s in report.spared) == [
        (0, "alias production"),
        (1, "linked in models/clf:v0"),
        (3, f"used by run {run.name} within 7d"),
    ]
    # best 1 by val_loss keeps v2 (0.1); last 2 keep v5 and v6
    assert _live(registry) == ["v0", "v1", "v2", "v3", "v5", "v6"]
    assert registry.resolve("vision", "clf", "production").version == 0

    # highest first: the best by -val_loss is v0 (0.9), which is protected anyway
    retention.set_policy(Target(project="vision", artifact="clf"), changes_of(by="-val_loss"))
    policy = retention.policies(project="vision")[0]
    assert policy.rules() == [
        "keep last 2",
        "keep best 1 by val_loss desc",
        "keep used within 7d",
    ]
    assert [r.version for r in retention.apply().removed] == [2]


def test_protections_hold_against_an_expired_ttl_too(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    ids = _log(registry, digest, 3)
    registry.add_alias(ids[0], "production")
    registry.create_registry("models")
    registry.link_version("models", "clf", ids[1])
    retention.set_policy(Target(project="vision"), changes_of(ttl="1d"))
    report = retention.apply(now=utcnow() + timedelta(days=2))
    assert [r.version for r in report.removed] == [2]
    assert [(s.version, s.rule) for s in report.spared] == [
        (0, "ttl 1d (project)"),
        (1, "ttl 1d (project)"),
    ]
    assert _live(registry) == ["v0", "v1"]


def test_a_collection_ttl_unlinks_old_links_without_aliases(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    ids = _log(registry, digest, 3)
    registry.create_registry("candidates")
    for vid in ids:
        registry.link_version("candidates", "clf", vid)
    registry.set_link_aliases("candidates", "clf", "v2", add=["chosen"])
    retention.set_policy(Target(registry="candidates", collection="clf"), {"ttl_seconds": DAY})
    retention.set_policy(Target(project="vision", artifact="clf"), {"keep_last": 1})
    later = utcnow() + timedelta(days=2)

    dry = retention.apply(dry_run=True, now=later)
    assert [(u.number, u.source) for u in dry.unlinked] == [
        (0, "vision/clf:v0"),
        (1, "vision/clf:v1"),
    ]
    assert [r.version for r in dry.removed] == [0, 1]  # no longer protected by those links
    assert len(registry.list_links("candidates", "clf")) == 3

    report = retention.apply(now=later)
    assert [u.number for u in report.unlinked] == [0, 1]
    assert [r.version for r in report.removed] == [0, 1]
    assert [link.version for link in registry.list_links("candidates", "clf")] == [2]
    history = registry.collection_history("candidates", "clf")
    assert [h.field for h in history].count("unlinked") == 2
    assert retention.policies(registry="candidates")[0].rules() == ["ttl 1d"]


def test_bad_input_is_refused_with_a_clear_message(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    ids = _log(registry, digest, 2, val_loss=[0.5, 0.4])
    artifact = Target(project="vision", artifact="clf")
    cases: list[tuple[Target, dict[str, Any], str]] = [
        (artifact, {"keep_last": -1}, "keep_last must be at least 1, not -1"),
        (artifact, {"keep_last": 0}, "keep_last must be at least 1"),
        (artifact, {"keep_best": 2}, "keep_best needs the metadata key"),
        (artifact, {"keep_best": 2, "best_key": "acc"}, "unknown metadata key 'acc'.*val_loss"),
        (artifact, {"best_key": "a$b"}, "invalid metadata key"),
        (artifact, {"best_order": "up"}, "best_order is 'asc' or 'desc'"),
        (artifact, {"keep_used_days": 0}, "keep_used_days must be at least 1"),
        (artifact, {"ttl_seconds": -5}, "ttl_seconds must be at least 0"),
        (artifact, {"keep": 3}, "unknown policy field"),
        (Target(registry="models", collection="clf"), {"keep_last": 3}, "a TTL only"),
        (Target(project="vision", registry="models"), {"keep_last": 3}, "(one)"),
    ]
    registry.create_registry("models")
    registry.link_version("models", "clf", ids[0])
    for target, changes, message in cases:
        with pytest.raises(InvalidInputError, match=message):
            retention.set_policy(target, changes)
    with pytest.raises(InvalidInputError, match="--unset takes"):
        changes_of(unset=["everything"])
    with pytest.raises(InvalidInputError, match="timedelta"):
        from cairn.service.retention import ttl_seconds

        ttl_seconds(timedelta(0))
    assert retention.policies(project="vision") == []  # nothing was half-set


def test_clearing_every_rule_removes_the_policy(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    _log(registry, digest, 2)
    target = Target(project="vision", artifact="clf")
    retention.set_policy(target, changes_of(keep_last=1, ttl="30d"))
    retention.set_policy(target, changes_of(unset=["ttl"]))
    assert retention.policies(project="vision")[0].rules() == ["keep last 1"]
    retention.set_policy(target, changes_of(unset=["keep-last"]))
    assert retention.policies(project="vision") == []
    assert retention.apply().removed == []


def test_one_evaluation_at_a_time(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest, database_url: str
) -> None:
    ids = _log(registry, digest, 2)
    retention.set_ttl(ids[0], DAY)
    other = SqlRetention(registry.engine)
    scheduler = RetentionScheduler(registry.engine, 3600)
    if database_url.startswith("sqlite"):
        with retention.evaluator() as got:
            assert got  # SQLite: no such lock (one process schedules; writes serialise)
        return
    with retention.evaluator() as got:
        assert got
        with other.evaluator() as second:
            assert not second
        with pytest.raises(ConflictError, match="another retention evaluation is running"):
            other.apply(now=utcnow() + timedelta(days=2))
        assert scheduler.run_once() is None  # the schedule skips its round
        assert other.apply(dry_run=True, now=utcnow() + timedelta(days=2)).removed  # reads go on
    assert _live(registry) == ["v0", "v1"]
    report = other.apply(now=utcnow() + timedelta(days=2))
    assert [r.version for r in report.removed] == [0]


def test_a_version_logged_during_an_evaluation_is_never_deleted_by_it(
    registry: SqlRegistry, retention: SqlRetention, digest: Digest
) -> None:
    """Each artifact is evaluated with the artifact locked: a version committed meanwhile is
    either seen (and is the newest, kept by keep-last) or made after the evaluation."""
    _log(registry, digest, 3)
    retention.set_policy(Target(project="vision", artifact="clf"), {"keep_last": 1})
    made: list[int] = []
    errors: list[BaseException] = []

    def log_more() -> None:
        try:
            for i in range(20):
                info, _ = registry.commit_version(
                    "vision", "clf", "model", digest=digest(f"late-{i}"), size=1, file_count=1
                )
                made.append(info.version)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    thread = threading.Thread(target=log_more)
    thread.start()
    reports = [retention.apply() for _ in range(5)]
    thread.join()
    assert not errors
    newest = max(made)
    assert registry.resolve("vision", "clf", "latest").version == newest
    for report in reports:
        for r in report.removed:
            assert r.version != newest


def test_migration_0010_keeps_existing_versions(database_url: str, digest: Digest) -> None:
    from alembic import command

    from cairn.metadata.migrate import HEAD_REVISION, alembic_config, current_revision

    engine = create_engine(database_url)
    now = utcnow()
    with engine.begin() as conn:
        command.upgrade(alembic_config(conn), "0009")
    with engine.begin() as conn:
        assert "ttl_seconds" not in {c["name"] for c in sa.inspect(conn).get_columns("versions")}
        conn.execute(
            sa.text("INSERT INTO projects (id, name, created_at) VALUES (1, 'vision', :t)"),
            {"t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO artifacts (id, project_id, name, type, description, created_at, "
                "updated_at) VALUES (1, 1, 'clf', 'model', '', :t, :t)"
            ),
            {"t": now},
        )
        conn.execute(
            sa.text(
                "INSERT INTO versions (id, artifact_id, version, digest, size, file_count, "
                "description, metadata, created_at, state) VALUES "
                "(1, 1, 0, :d, 5, 1, '', '{}', :t, 'committed')"
            ),
            {"t": now, "d": digest("old")},
        )
    engine.dispose()
    with SqlRegistry(database_url) as registry:  # opening upgrades to head
        assert current_revision(registry.engine) == HEAD_REVISION
        old = registry.resolve("vision", "clf", "v0")
        assert old.digest == digest("old") and old.state == "committed"
        retention = SqlRetention(registry.engine)
        assert retention.ttl(old.id).ttl is None  # an existing version inherits (no default)
        retention.set_ttl(old.id, DAY)
        assert retention.ttl(old.id).ttl == DAY
        assert [r.version for r in retention.apply(now=now + timedelta(days=2)).removed] == [0]
