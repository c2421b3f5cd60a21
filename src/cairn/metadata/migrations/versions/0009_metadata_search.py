"""PostgreSQL: a generated jsonb copy of versions.metadata with a GIN index, for search.

The `metadata` column stays `json` (it keeps the key order a version was logged with); search
reads `metadata_search`, which the database computes from it on every write. SQLite needs
nothing: its JSON functions read the text directly.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "ALTER TABLE versions ADD COLUMN metadata_search jsonb "
        "GENERATED ALWAYS AS (metadata::jsonb) STORED"
    )
    op.execute(
        "CREATE INDEX ix_versions_metadata_search ON versions "
        "USING gin (metadata_search jsonb_path_ops)"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP INDEX ix_versions_metadata_search")
    op.execute("ALTER TABLE versions DROP COLUMN metadata_search")
