"""Registries above projects: collections of linked versions with their own numbers, aliases and
append-only history; per-registry roles; the audit log.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# frozen copies of the column types in cairn.metadata.tables at this revision
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "registries",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("protected_aliases", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("created_by", sa.String(length=255), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_registries")),
        sa.UniqueConstraint("name", name=op.f("uq_registries_name")),
    )
    op.create_table(
        "registry_members",
        sa.Column("registry_id", BIG_ID, nullable=False),
        sa.Column("user", sa.String(length=255), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.CheckConstraint(
            "role IN ('viewer', 'member', 'maintainer', 'admin')",
            name=op.f("ck_registry_members_role"),
        ),
        sa.ForeignKeyConstraint(
            ["registry_id"],
            ["registries.id"],
            name=op.f("fk_registry_members_registry_id_registries"),
        ),
        sa.PrimaryKeyConstraint("registry_id", "user", name=op.f("pk_registry_members")),
    )
    op.create_index("ix_registry_members_user", "registry_members", ["user"])
    op.create_table(
        "collections",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("registry_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["registry_id"], ["registries.id"], name=op.f("fk_collections_registry_id_registries")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collections")),
        sa.UniqueConstraint("registry_id", "name", name="uq_collections_registry_name"),
    )
    op.create_table(
        "collection_links",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("collection_id", BIG_ID, nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("version_id", BIG_ID, nullable=False),
        sa.Column("linked_at", TIMESTAMP, nullable=False),
        sa.Column("unlinked_at", TIMESTAMP, nullable=True),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_links_collection_id_collections"),
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_collection_links_version_id_versions")
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_collection_links_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_links")),
        sa.UniqueConstraint("collection_id", "number", name="uq_collection_links_number"),
    )
    op.create_index("ix_collection_links_version", "collection_links", ["version_id"])
    op.create_table(
        "collection_aliases",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("collection_id", BIG_ID, nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("link_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_aliases_collection_id_collections"),
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["collection_links.id"],
            name=op.f("fk_collection_aliases_link_id_collection_links"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_aliases")),
        sa.UniqueConstraint("collection_id", "alias", name="uq_collection_aliases_alias"),
    )
    op.create_index("ix_collection_aliases_link", "collection_aliases", ["link_id"])
    op.create_table(
        "collection_history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("collection_id", BIG_ID, nullable=False),
        sa.Column("link_id", BIG_ID, nullable=True),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=True),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(
            ["collection_id"],
            ["collections.id"],
            name=op.f("fk_collection_history_collection_id_collections"),
        ),
        sa.ForeignKeyConstraint(
            ["link_id"],
            ["collection_links.id"],
            name=op.f("fk_collection_history_link_id_collection_links"),
        ),
        sa.ForeignKeyConstraint(
            ["run_id"], ["runs.id"], name=op.f("fk_collection_history_run_id_runs")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_collection_history")),
    )
    op.create_index(
        "ix_collection_history_collection", "collection_history", ["collection_id", "id"]
    )
    op.create_index(
        "ix_collection_history_alias", "collection_history", ["collection_id", "alias", "at"]
    )
    op.create_table(
        "audit_log",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.Column("address", sa.String(length=64), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("project", sa.String(length=128), nullable=True),
        sa.Column("registry", sa.String(length=128), nullable=True),
        sa.Column("target", sa.String(length=512), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_log")),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])
    op.create_index("ix_audit_log_user", "audit_log", ["user", "at"])
    op.create_index("ix_audit_log_action", "audit_log", ["action", "at"])


def downgrade() -> None:
    op.drop_table("audit_log")
    op.drop_table("collection_history")
    op.drop_table("collection_aliases")
    op.drop_table("collection_links")
    op.drop_table("collections")
    op.drop_table("registry_members")
    op.drop_table("registries")
