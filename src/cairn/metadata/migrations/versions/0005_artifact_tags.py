"""Artifacts: tags of their own (W&B's collection tags), apart from each version's tags.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "artifact_tags",
        sa.Column(
            "artifact_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_artifact_tags_artifact_id_artifacts")
        ),
        sa.PrimaryKeyConstraint("artifact_id", "tag", name=op.f("pk_artifact_tags")),
    )
    op.create_index("ix_artifact_tags_tag", "artifact_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_artifact_tags_tag", table_name="artifact_tags")
    op.drop_table("artifact_tags")
