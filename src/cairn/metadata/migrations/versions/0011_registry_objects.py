"""Which objects a registry's linked versions hold, so its members may download them.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# frozen copy of the id type in cairn.metadata.tables at this revision
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registry_objects",
        sa.Column("registry_id", BIG_ID, nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_registry_objects_registry_id_registries"),
        ),
        sa.PrimaryKeyConstraint("registry_id", "digest", name=op.f("pk_registry_objects")),
    )
    op.create_index("ix_registry_objects_digest", "registry_objects", ["digest"])


def downgrade() -> None:
    op.drop_index("ix_registry_objects_digest", table_name="registry_objects")
    op.drop_table("registry_objects")
