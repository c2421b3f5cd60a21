"""Distributed versions: the parts many workers upsert before one finishes the version.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# frozen copies of the column types in cairn.metadata.tables at this revision
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_parts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("project_id", BIG_ID, nullable=False),
        sa.Column("artifact", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("distributed_id", sa.String(length=128), nullable=False),
        sa.Column("part", sa.String(length=128), nullable=False),
        sa.Column("root", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.BigInteger(), nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_artifact_parts_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifact_parts")),
        sa.UniqueConstraint(
            "project_id", "artifact", "distributed_id", "part", name="uq_artifact_parts_part"
        ),
    )
    op.create_index("ix_artifact_parts_updated_at", "artifact_parts", ["updated_at"])


def downgrade() -> None:
    op.drop_index("ix_artifact_parts_updated_at", table_name="artifact_parts")
    op.drop_table("artifact_parts")
