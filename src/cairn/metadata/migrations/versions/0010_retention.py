"""Retention: a time to live per version, and policies per project, artifact or collection.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# frozen copies of the column types in cairn.metadata.tables at this revision
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("versions") as batch:
        batch.add_column(sa.Column("ttl_seconds", sa.BigInteger(), nullable=True))
    op.create_table(
        "retention_policies",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("project_id", BIG_ID, nullable=True),
        sa.Column("artifact_id", BIG_ID, nullable=True),
        sa.Column("collection_id", BIG_ID, nullable=True),
        sa.Column("ttl_seconds", sa.BigInteger(), nullable=True),
        sa.Column("keep_last", sa.Integer(), nullable=True),
        sa.Column("keep_best", sa.Integer(), nullable=True),
        sa.Column("best_key", sa.String(length=255), nullable=True),
        sa.Column("best_order", sa.String(length=4), nullable=True),
        sa.Column("keep_used_days", sa.Integer(), nullable=True),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.Column("updated_by", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "best_order IN ('asc', 'desc')", name=op.f("ck_retention_policies_best_order")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_retention_policies_project_id_projects")
        ),
        sa.ForeignKeyConstraint(
            ["artifact_id"],
            ["artifacts.id"],
            name=op.f("fk_retention_policies_artifact_id_artifacts"),
        ),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_retention_policies_collection_id_collections"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_retention_policies")),
        sa.UniqueConstraint("scope", name="uq_retention_policies_scope"),
    )


def downgrade() -> None:
    op.drop_table("retention_policies")
    with op.batch_alter_table("versions") as batch:
        batch.drop_column("ttl_seconds")
