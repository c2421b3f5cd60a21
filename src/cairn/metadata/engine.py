"""Engines and transactions for the metadata database (SQLite or PostgreSQL).

Writers are serialised so that version numbers are gap-free and unique across processes:

* SQLite: every write transaction starts with ``BEGIN IMMEDIATE``, which takes the database's
  single write lock up front (readers are not blocked: the database runs in WAL mode). Waiting
  writers retry for up to `SQLITE_BUSY_TIMEOUT` seconds (SQLite's busy timeout).
* PostgreSQL: writes run in READ COMMITTED; code that allocates or moves something per artifact
  first takes ``SELECT ... FOR UPDATE`` on the artifact row (`lock_artifact`). Unique-constraint
  races (two processes creating the same project or artifact), deadlocks and serialisation
  failures make `transaction` retry the whole unit of work.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.engine import URL, Connection, Engine
from sqlalchemy.orm import Session
from sqlalchemy.pool import ConnectionPoolEntry

from cairn.errors import ConflictError, StoreError

T = TypeVar("T")

SQLITE_BUSY_TIMEOUT = 30.0  # seconds a writer waits for SQLite's write lock
MAX_ATTEMPTS = 8  # tries of one unit of work that lost a race
_WRITE_OPTION = "cairn_write"

# PostgreSQL SQLSTATEs worth retrying: unique violation (lost a create race), serialisation
# failure, deadlock
_PG_RETRY_STATES = frozenset({"23505", "40001", "40P01"})


def safe_url(url: str | URL) -> str:
    """The URL without its password, for messages."""
    return sa.make_url(url).render_as_string(hide_password=True)


def sqlite_path(url: str | URL) -> Path | None:
    """The database file of a SQLite URL; None for in-memory or non-SQLite URLs."""
    parsed = sa.make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database)


def create_engine(url: str | URL) -> Engine:
    """An engine for `url`, configured for Cairn (see the module docstring)."""
    parsed = sa.make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        db_file = sqlite_path(parsed)
        if db_file is not None:
            try:  # SQLite creates the file, not the folders above it
                db_file.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the folder of the SQLite database {db_file}: {exc.strerror}; "
                    "choose a path you can write to"
                ) from None
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT})
        _configure_sqlite(engine)
        return engine
    # PostgreSQL: no ping on every checkout (a round trip per transaction): a connection that
    # died while pooled (a database restart) fails its first statement, which invalidates the
    # whole pool, and `transaction` runs the work again on a new connection.
    return sa.create_engine(parsed)


def _configure_sqlite(engine: Engine) -> None:
    # The recipe from SQLAlchemy's SQLite documentation: stop pysqlite from issuing its own
    # (late, deferred) BEGIN and emit BEGIN ourselves, IMMEDIATE for writers.
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: ConnectionPoolEntry) -> None:
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_TIMEOUT * 1000)}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if sqlite_path(engine.url) is not None:
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.execute("PRAGMA synchronous = NORMAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        if conn.get_execution_options().get(_WRITE_OPTION):
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        else:
            conn.exec_driver_sql("BEGIN")


def writer(engine: Engine) -> Engine:
    """A view of `engine` whose transactions are write transactions (BEGIN IMMEDIATE)."""
    return engine.execution_options(**{_WRITE_OPTION: True})


_VIEWS_ATTRIBUTE = "_cairn_views"


def _views(engine: Engine) -> tuple[Engine, Engine]:
    """(the engine for reads, the engine for writes). On PostgreSQL reads run in autocommit:
    under READ COMMITTED every statement takes its own snapshot anyway, so a read transaction
    only added a BEGIN and a COMMIT round trip. SQLite keeps its read transactions (there they
    give one snapshot across statements)."""
    found: tuple[Engine, Engine] | None = getattr(engine, _VIEWS_ATTRIBUTE, None)
    if found is None:
        reads = engine
        if engine.dialect.name == "postgresql":
            reads = engine.execution_options(isolation_level="AUTOCOMMIT")
        found = (reads, writer(engine))
        setattr(engine, _VIEWS_ATTRIBUTE, found)  # kept on the engine: made once, freed with it
    return found


def is_sqlite(bind: Engine | Connection | Session) -> bool:
    dialect = bind.get_bind().dialect if isinstance(bind, Session) else bind.dialect
    return dialect.name == "sqlite"


@contextmanager
def session_scope(engine: Engine, *, write: bool) -> Iterator[Session]:
    """One short transaction; committed when the block ends without an exception."""
    bind = _views(engine)[1 if write else 0]
    with Session(bind, expire_on_commit=False, autoflush=True) as session, session.begin():
        yield session


def lock_artifact(session: Session, artifact_id: int) -> None:
    """Serialise writers of one artifact: ``SELECT ... FOR UPDATE`` on PostgreSQL.

    On SQLite the write transaction already holds the database's write lock.
    """
    from cairn.metadata.tables import Artifact

    if is_sqlite(session):
        return
    session.execute(
        sa.select(Artifact.id).where(Artifact.id == artifact_id).with_for_update()
    ).one()


def _is_retryable(exc: sa.exc.DBAPIError) -> bool:
    orig = exc.orig
    sqlstate = getattr(orig, "sqlstate", None)
    if sqlstate is not None:
        return sqlstate in _PG_RETRY_STATES
    if isinstance(orig, sqlite3.IntegrityError):
        return "UNIQUE constraint failed" in str(orig)
    return False


def _is_sqlite_locked(exc: sa.exc.DBAPIError) -> bool:
    return isinstance(exc.orig, sqlite3.OperationalError) and "locked" in str(exc.orig)


def transaction(engine: Engine, work: Callable[[Session], T], *, write: bool = True) -> T:
    """Run `work` in one transaction, retrying it when it lost a race to another writer.

    `work` must not keep state between attempts other than what it reads from the session.
    Cairn errors raised by `work` roll the transaction back and propagate unchanged.
    """
    for attempt in range(1, MAX_ATTEMPTS + 1):
        committing = False
        try:
            with session_scope(engine, write=write) as session:
                result = work(session)
                session.flush()
                committing = True
            return result
        except sa.exc.DBAPIError as exc:
            if exc.connection_invalidated and not committing and attempt < MAX_ATTEMPTS:
                # the connection was dead (the database restarted since it was pooled): the
                # pool is now invalidated and nothing was committed, so run the work again
                continue
            if _is_sqlite_locked(exc):
                raise StoreError(
                    f"the metadata database {safe_url(engine.url)} stayed locked for "
                    f"{SQLITE_BUSY_TIMEOUT:.0f} s: another process holds a long write "
                    "transaction. Retry, or stop the stuck process."
                ) from exc
            if not _is_retryable(exc):
                if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError):
                    raise StoreError(
                        f"cannot use the metadata database {safe_url(engine.url)}: "
                        f"{exc.orig}. Check that it is reachable and that "
                        "CAIRN_DATABASE_URL points at it."
                    ) from exc
                raise
            if attempt == MAX_ATTEMPTS:
                raise ConflictError(
                    f"gave up after {MAX_ATTEMPTS} attempts: concurrent writers kept "
                    "changing the same records. Retry the operation."
                ) from exc
            time.sleep(random.uniform(0.0, 0.01 * 2**attempt))
    raise AssertionError("unreachable")  # pragma: no cover


__all__ = [
    "SQLITE_BUSY_TIMEOUT",
    "create_engine",
    "is_sqlite",
    "lock_artifact",
    "safe_url",
    "session_scope",
    "sqlite_path",
    "transaction",
    "writer",
]
