"""`SqlRegistry`: the `Registry` contract on SQLAlchemy (SQLite for the embedded mode,
PostgreSQL for the server).

Every public method is one short transaction (see `cairn.metadata.engine.transaction`); nothing
another process would need is kept in memory, so any number of processes may share a database.
Writers that allocate version numbers or move aliases lock the artifact first
(`lock_artifact`; ``BEGIN IMMEDIATE`` already serialises writers on SQLite).

The methods live with the aggregate they own, one mixin per module over the session base of
`common`:

- `projects`: listing projects, finding or creating one;
- `runs`: runs, their metrics and reported state;
- `artifacts`: artifact and version rows, lookups and records (`list_artifacts`);
- `versions`: committing, resolving, listing, editing and deleting versions;
- `aliases`: aliases and tags inside a transaction;
- `history`: the append-only history of each version;
- `lineage`: run/version edges and the lineage graph;
- `registries`: registries, their roles, collections of linked versions and their aliases;
- `search`: the filter language (`cairn.service.search`) as SQL;
- `asof`: which version a name pointed at, at a given time;
- `audit`: the audit log, written in the transaction of each change made on a server.
"""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from cairn import config
from cairn.metadata.engine import create_engine, sqlite_path
from cairn.metadata.migrate import ensure_schema
from cairn.service.registry import Registry
from cairn.service.sql.artifacts import ArtifactsMixin
from cairn.service.sql.asof import AsOfMixin
from cairn.service.sql.audit import AuditMixin
from cairn.service.sql.history import HistoryMixin
from cairn.service.sql.lineage import LineageMixin
from cairn.service.sql.projects import ProjectsMixin
from cairn.service.sql.registries import RegistriesMixin
from cairn.service.sql.runs import RunsMixin
from cairn.service.sql.search import SearchMixin
from cairn.service.sql.versions import VersionsMixin


class SqlRegistry(
    ProjectsMixin,
    RunsMixin,
    ArtifactsMixin,
    VersionsMixin,
    HistoryMixin,
    LineageMixin,
    RegistriesMixin,
    SearchMixin,
    AsOfMixin,
    AuditMixin,
):
    """The metadata registry on a SQLAlchemy database URL. Opening it brings the schema to
    the current revision."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine = create_engine(url)
        try:
            ensure_schema(self._engine)
        except BaseException:
            self._engine.dispose()
            raise

    @property
    def engine(self) -> sa.Engine:
        """The SQLAlchemy engine (the server keeps its account tables in the same database)."""
        return self._engine

    def __repr__(self) -> str:
        return f"SqlRegistry({self._engine.url.render_as_string(hide_password=True)!r})"

    def close(self) -> None:
        self._engine.dispose()

    def __enter__(self) -> SqlRegistry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_registry(url: str | None = None) -> SqlRegistry:
    """The registry at `url`, default `cairn.config.database_url()` (a SQLite file under
    CAIRN_DIR, whose directory is created)."""
    url = url or config.database_url()
    db_file = sqlite_path(url)
    if db_file is not None:
        Path(db_file).expanduser().parent.mkdir(parents=True, exist_ok=True)
    return SqlRegistry(url)


def _conforms(registry: SqlRegistry) -> Registry:
    return registry  # mypy checks that SqlRegistry implements the Registry protocol


__all__ = ["SqlRegistry", "open_registry"]
