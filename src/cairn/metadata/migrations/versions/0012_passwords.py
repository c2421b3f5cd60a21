"""Passwords for the dashboard: users.password_hash, and sessions started without a key.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("users") as batch:
        batch.add_column(sa.Column("password_hash", sa.String(length=255), nullable=True))
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.alter_column("key_id", existing_type=BIG_ID, nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM dashboard_sessions WHERE key_id IS NULL")
    with op.batch_alter_table("dashboard_sessions") as batch:
        batch.alter_column("key_id", existing_type=BIG_ID, nullable=False)
    with op.batch_alter_table("users") as batch:
        batch.drop_column("password_hash")
