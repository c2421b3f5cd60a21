"""Alembic environment for Cairn's metadata schema.

Run through `cairn.metadata.migrate`, which passes an open connection (inside a transaction)
as ``config.attributes["connection"]``; there is no alembic.ini.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

import cairn.metadata.accounts  # noqa: F401 - registers the server's tables in the metadata
from cairn.metadata.tables import PG_ONLY_SCHEMA, metadata

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError(
        "Cairn's migrations run through cairn.metadata.migrate "
        "(python -m cairn.metadata.migrate upgrade URL), not the alembic command"
    )


def include_object(
    obj: object, name: str | None, kind: str, reflected: bool, other: object
) -> bool:
    """Everything but the PostgreSQL-only search column and its index (see tables.py)."""
    return name not in PG_ONLY_SCHEMA


context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
    include_object=include_object,
)
with context.begin_transaction():
    context.run_migrations()
