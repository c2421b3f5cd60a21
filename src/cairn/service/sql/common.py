"""What every part of the SQL registry shares: the session base class (one short
transaction per public method), version states, edge directions and small helpers used inside a
transaction."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.metadata.engine import transaction
from cairn.metadata.tables import Artifact, Project, RunArtifact

T = TypeVar("T")

COMMITTED = "committed"
DELETED = "deleted"
INPUT = "input"
OUTPUT = "output"
_CHUNK = 500  # ids per IN (...) list


def utcnow() -> datetime:
    return datetime.now(UTC)


def chunks(items: Iterable[T], size: int = _CHUNK) -> Iterator[list[T]]:
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def insert_ignore(
    s: Session,
    model: type[Project] | type[Artifact] | type[RunArtifact],
    values: dict[str, Any],
    conflict: list[str],
) -> bool:
    """INSERT unless a row with the same `conflict` columns exists (possibly being inserted by
    a concurrent transaction, which PostgreSQL waits for). True when this call inserted it."""
    dialect = s.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        done = s.execute(
            pg_insert(model)
            .values(values)
            .on_conflict_do_nothing(index_elements=conflict)
            .returning(sa.literal(1))
        )
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        done = s.execute(
            sqlite_insert(model)
            .values(values)
            .on_conflict_do_nothing(index_elements=conflict)
            .returning(sa.literal(1))
        )
    else:  # pragma: no cover - other databases are not supported yet
        try:
            with s.begin_nested():
                s.execute(sa.insert(model).values(values))
        except sa.exc.IntegrityError:
            return False
        return True
    return done.first() is not None  # (rowcount is -1 on psycopg for this statement)


def escape_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


class SqlBase:
    """The engine and the two transaction helpers every aggregate's methods run their work in."""

    _engine: sa.Engine

    def _read(self, work: Callable[[Session], T]) -> T:
        return transaction(self._engine, work, write=False)

    def _write(self, work: Callable[[Session], T]) -> T:
        return transaction(self._engine, work, write=True)
