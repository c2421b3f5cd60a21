"""Bring the metadata database's schema to the head revision.

The common case (the schema is already current) must be cheap, because every process that
opens a registry runs it: it reads the ``alembic_version`` table with SQLAlchemy and compares it
with `HEAD_REVISION`, without importing Alembic. Alembic is imported only to create or upgrade
the schema, under a lock so that processes starting at the same time do not collide:
a ``fcntl.flock`` on ``<database>.lock`` plus ``BEGIN IMMEDIATE`` for SQLite, and a transaction
level advisory lock for PostgreSQL.

Developers: ``python -m cairn.metadata.migrate revision "what changed"`` writes a new migration
by comparing `cairn.metadata.tables` with a database at head; then update `HEAD_REVISION`.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from cairn.errors import StoreError
from cairn.metadata.engine import safe_url, sqlite_path, writer

if TYPE_CHECKING:
    from alembic.config import Config

#: the newest migration in ``migrations/versions``; a test checks it against Alembic's head
HEAD_REVISION = "0013"
MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
VERSION_TABLE = "alembic_version"


def _read_revisions(conn: Connection) -> list[str] | None:
    """The revisions stamped in the database; None when it has no schema at all."""
    if not sa.inspect(conn).has_table(VERSION_TABLE):
        return None
    query = sa.text(f"SELECT version_num FROM {VERSION_TABLE}")
    return [str(r) for r in conn.execute(query).scalars()]


def current_revision(engine: Engine) -> str | None:
    """The database's schema revision, or None for an empty database."""
    with engine.connect() as conn:
        try:
            rows = conn.execute(sa.text(f"SELECT version_num FROM {VERSION_TABLE}")).all()
        except sa.exc.DBAPIError:
            conn.rollback()
            revisions = _read_revisions(conn)  # raises again if the database itself is unusable
        else:
            revisions = [str(r[0]) for r in rows]
    if not revisions:
        return None
    if len(revisions) > 1:
        raise StoreError(
            f"the metadata database {safe_url(engine.url)} has several schema revisions "
            f"({', '.join(revisions)}); it was changed by hand. Restore it from a backup."
        )
    return revisions[0]


def ensure_schema(engine: Engine) -> None:
    """Create or upgrade the schema to `HEAD_REVISION`; a no-op when it is already there."""
    db_file = sqlite_path(engine.url)
    fresh_file = db_file is not None and (not db_file.exists() or db_file.stat().st_size == 0)
    if not fresh_file:
        try:
            if current_revision(engine) == HEAD_REVISION:
                return
        except sa.exc.DBAPIError as exc:
            raise _unusable(engine, exc) from exc
    lock = _file_lock(db_file) if db_file is not None else nullcontext()
    with lock:
        try:
            _upgrade(engine)
        except sa.exc.DBAPIError as exc:
            raise _unusable(engine, exc) from exc


def _unusable(engine: Engine, exc: sa.exc.DBAPIError) -> StoreError:
    return StoreError(
        f"cannot open the metadata database {safe_url(engine.url)}: {exc.orig}. Check that it "
        "is reachable and that CAIRN_DATABASE_URL points at it."
    )


def alembic_config(connection: Connection | None = None) -> Config:
    """An Alembic configuration for the migrations shipped in this package (no alembic.ini)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def _upgrade(engine: Engine) -> None:
    from alembic import command
    from alembic.script import ScriptDirectory

    with writer(engine).connect() as conn:
        sqlite = conn.dialect.name == "sqlite"
        if sqlite:
            # Batch migrations copy and drop tables, which foreign keys would stop; the pragma
            # only takes effect outside a transaction. Checked again before committing.
            _sqlite_foreign_keys(conn, on=False)
        try:
            with conn.begin():  # BEGIN IMMEDIATE on SQLite
                if conn.dialect.name == "postgresql":
                    conn.execute(
                        sa.text("SELECT pg_advisory_xact_lock(hashtext(:key || current_schema()))"),
                        {"key": "cairn.migrate."},
                    )
                revisions = _read_revisions(conn) or []
                if revisions == [HEAD_REVISION]:
                    return  # another process got here first
                script = ScriptDirectory.from_config(alembic_config())
                known = {rev.revision for rev in script.walk_revisions()}
                unknown = [rev for rev in revisions if rev not in known]
                if unknown:
                    raise StoreError(
                        f"the metadata database {safe_url(engine.url)} has schema revision "
                        f"{unknown[0]}, newer than this version of Cairn knows (head "
                        f"{HEAD_REVISION}). Upgrade Cairn (pip install -U cairn)."
                    )
                command.upgrade(alembic_config(conn), "head")
                if sqlite and conn.exec_driver_sql("PRAGMA foreign_key_check").first():
                    raise StoreError(
                        f"upgrading the schema of {safe_url(engine.url)} would break foreign "
                        "keys; nothing was changed. Report this as a bug in Cairn."
                    )
        finally:
            if sqlite:
                _sqlite_foreign_keys(conn, on=True)


def _sqlite_foreign_keys(conn: Connection, *, on: bool) -> None:
    raw = conn.connection.driver_connection
    if raw is not None:
        raw.execute(f"PRAGMA foreign_keys = {'ON' if on else 'OFF'}")


@contextmanager
def _file_lock(db_file: Path) -> Iterator[None]:
    """An exclusive lock on ``<db_file>.lock`` held by this process for the block."""
    lock_path = db_file.with_name(db_file.name + ".lock")
    try:
        handle = open(lock_path, "a+b")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise StoreError(
            f"cannot create {lock_path}: {exc.strerror}. Check that the directory "
            f"{db_file.parent} exists and is writable."
        ) from exc
    try:
        if sys.platform == "win32":
            import msvcrt

            while True:
                try:
                    msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                    break
                except OSError:  # LK_LOCK gives up after ten seconds; keep waiting
                    continue
            try:
                yield
            finally:
                handle.seek(0)
                msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
        else:
            import fcntl

            fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle.fileno(), fcntl.LOCK_UN)
    finally:
        handle.close()


def _make_revision(message: str) -> None:
    """Autogenerate a migration from the difference between the models and head."""
    import tempfile

    from alembic import command

    from cairn.metadata.engine import create_engine

    with tempfile.TemporaryDirectory() as tmp:
        engine = create_engine(f"sqlite:///{tmp}/head.db")
        try:
            ensure_schema(engine)
            with engine.begin() as conn:
                command.revision(alembic_config(conn), message=message, autogenerate=True)
        finally:
            engine.dispose()


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) == 2 and args[0] == "upgrade":
        engine_url: Any = args[1]
        from cairn.metadata.engine import create_engine

        engine = create_engine(engine_url)
        try:
            ensure_schema(engine)
        finally:
            engine.dispose()
        return 0
    if len(args) == 2 and args[0] == "revision":
        _make_revision(args[1])
        return 0
    print("usage: python -m cairn.metadata.migrate (upgrade URL | revision MESSAGE)")
    return 2


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "HEAD_REVISION",
    "MIGRATIONS_DIR",
    "alembic_config",
    "current_revision",
    "ensure_schema",
]
