"""Engines, write transactions and retries, on SQLite and PostgreSQL."""

from __future__ import annotations

import re
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session

from cairn.errors import ConflictError
from cairn.metadata import engine as meta_engine
from cairn.metadata.engine import create_engine, lock_artifact, session_scope, transaction
from cairn.metadata.migrate import ensure_schema
from cairn.metadata.tables import Artifact, Project


@pytest.fixture
def engine(database_url: str) -> Iterator[Engine]:
    eng = create_engine(database_url)
    ensure_schema(eng)
    yield eng
    eng.dispose()


def _add_project(s: Session, name: str) -> int:
    project = Project(name=name, created_at=datetime.now(UTC))
    s.add(project)
    s.flush()
    return project.id


def test_sqlite_write_transactions_take_the_write_lock_up_front(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/meta.db"
    eng = create_engine(url)
    ensure_schema(eng)
    try:
        with session_scope(eng, write=True) as s:
            s.execute(sa.select(Project.id)).all()  # only a read so far
            other = sqlite3.connect(tmp_path / "meta.db", timeout=0.05, isolation_level=None)
            with pytest.raises(sqlite3.OperationalError, match="locked"):
                other.execute("BEGIN IMMEDIATE")
            other.close()
        with session_scope(eng, write=False) as s:
            s.execute(sa.select(Project.id)).all()
            other = sqlite3.connect(tmp_path / "meta.db", timeout=0.05, isolation_level=None)
            other.execute("BEGIN IMMEDIATE")  # readers do not block writers (WAL)
            other.execute("ROLLBACK")
            other.close()
    finally:
        eng.dispose()


def test_postgres_lock_artifact_excludes_other_writers(postgres_url: str) -> None:
    eng = create_engine(postgres_url)
    ensure_schema(eng)
    try:
        with session_scope(eng, write=True) as s:
            pid = _add_project(s, "p")
            now = datetime.now(UTC)
            artifact = Artifact(
                project_id=pid, name="a", type="t", description="", created_at=now, updated_at=now
            )
            s.add(artifact)
            s.flush()
            artifact_id = artifact.id
        with session_scope(eng, write=True) as s:
            lock_artifact(s, artifact_id)
            with eng.connect() as other:
                other.exec_driver_sql("SET lock_timeout = '100ms'")
                with pytest.raises(sa.exc.OperationalError, match="lock timeout"):
                    other.execute(
                        sa.select(Artifact.id).where(Artifact.id == artifact_id).with_for_update()
                    )
    finally:
        eng.dispose()


def test_transaction_retries_work_that_lost_a_unique_race(engine: Engine) -> None:
    attempts: list[int] = []

    def work(s: Session) -> str:
        attempts.append(1)
        _add_project(s, f"racy{len(attempts)}")
        if len(attempts) == 1:  # a unique violation, as when another process won a race
            _add_project(s, "racy1")
        return "done"

    assert transaction(engine, work) == "done"
    assert len(attempts) == 2
    with session_scope(engine, write=False) as s:
        assert s.scalars(sa.select(Project.name)).all() == ["racy2"]


def test_transaction_gives_up_with_conflict_error(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(meta_engine, "MAX_ATTEMPTS", 3)
    with session_scope(engine, write=True) as s:
        _add_project(s, "taken")
    calls: list[int] = []

    def work(s: Session) -> None:
        calls.append(1)
        _add_project(s, "taken")

    with pytest.raises(ConflictError, match="Retry"):
        transaction(engine, work)
    assert len(calls) == 3


def test_transaction_rolls_back_on_errors(engine: Engine) -> None:
    def work(s: Session) -> None:
        _add_project(s, "half-done")
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        transaction(engine, work)
    with session_scope(engine, write=False) as s:
        assert s.scalars(sa.select(Project.name)).all() == []


def test_timestamps_are_stored_as_utc_and_read_back_aware(engine: Engine) -> None:
    plus_two = datetime(2024, 5, 1, 14, 0, tzinfo=timezone(timedelta(hours=2)))
    with session_scope(engine, write=True) as s:
        s.add(Project(name="tz", created_at=plus_two))
    with session_scope(engine, write=False) as s:
        stored = s.scalars(sa.select(Project.created_at)).one()
    assert stored == plus_two and stored.utcoffset() == timedelta(0)
    assert stored.hour == 12
    with (
        pytest.raises(sa.exc.StatementError, match="naive datetime"),
        session_scope(engine, write=True) as s,
    ):
        s.add(Project(name="naive", created_at=datetime(2024, 5, 1)))


def test_postgres_connections_that_died_in_the_pool_are_replaced(postgres_url: str) -> None:
    """A database restart kills every pooled connection; the next read and the next write run
    on new ones instead of failing (there is no ping per checkout to catch it earlier)."""
    eng = create_engine(postgres_url)
    ensure_schema(eng)
    admin = sa.create_engine(postgres_url)

    def backend(s: Session) -> int:
        return int(s.scalar(sa.text("SELECT pg_backend_pid()")))

    def kill(pid: int) -> None:
        with admin.connect() as conn:
            assert conn.scalar(sa.text("SELECT pg_terminate_backend(:p)"), {"p": pid})
        deadline = datetime.now(UTC) + timedelta(seconds=10)
        with admin.connect() as conn:  # wait until the backend is gone
            while conn.scalar(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE pid = :p"), {"p": pid}
            ):
                assert datetime.now(UTC) < deadline

    try:
        first = transaction(eng, backend, write=False)
        kill(first)
        second = transaction(eng, backend, write=False)
        assert second != first
        kill(second)
        transaction(eng, lambda s: _add_project(s, "after-restart"))
        names = transaction(eng, lambda s: list(s.scalars(sa.select(Project.name))), write=False)
        assert names == ["after-restart"]
    finally:
        admin.dispose()
        eng.dispose()


def test_a_large_first_bind_leaves_postgres_able_to_check_digests_by_index(
    postgres_url: str,
) -> None:
    """A new server's first large version: after its objects are bound to the project, the
    check of which digests the project holds is planned with statistics that know the rows
    (an index lookup per digest), not from those of an empty table, under which each batch
    of 500 digests scanned the whole table (15.7 s of checks for 200,000 objects)."""
    import os

    from cairn.service.accounts import Accounts

    eng = create_engine(postgres_url)
    ensure_schema(eng)
    try:
        project_id = meta_engine.transaction(eng, lambda s: _add_project(s, "big"), write=True)
        digests = ["blake3:" + os.urandom(32).hex() for _ in range(12_000)]
        accounts = Accounts(eng)
        accounts.bind(project_id, digests)
        assert accounts.bound(project_id, digests[:500]) == set(digests[:500])
        with eng.connect() as conn:
            counted = conn.execute(
                sa.text("SELECT reltuples FROM pg_class WHERE oid = to_regclass('project_objects')")
            ).scalar()
            plan = "\n".join(
                row[0]
                for row in conn.execute(
                    sa.text(
                        "EXPLAIN SELECT digest FROM project_objects WHERE project_id = :p"
                        " AND digest = ANY(:ds)"
                    ),
                    {"p": project_id, "ds": digests[:500]},
                )
            )
        assert counted is not None and counted >= 12_000
        # the planner expects the 500 rows it will find, not a share of a table it knows
        # nothing of (93,079 of 200,000 rows for 500 digests, before): at 200,000 rows it then
        # looks the digests up by index
        expected = int(re.search(r"rows=(\d+)", plan).group(1))  # type: ignore[union-attr]
        assert expected <= 1_000
    finally:
        eng.dispose()
