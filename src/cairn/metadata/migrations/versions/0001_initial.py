"""Initial schema: projects, runs, metrics, artifacts, versions, aliases, tags, history, lineage.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

# frozen copies of the column types in cairn.metadata.tables at this revision
BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
TIMESTAMP = sa.DateTime(timezone=True)

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
        sa.UniqueConstraint("name", name=op.f("uq_projects_name")),
    )
    op.create_table(
        "artifacts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("project_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=128), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("updated_at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_artifacts_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_artifacts")),
        sa.UniqueConstraint("project_id", "name", name="uq_artifacts_project_name"),
    )
    op.create_index("ix_artifacts_project_type", "artifacts", ["project_id", "type"])
    op.create_table(
        "runs",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("project_id", BIG_ID, nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("job_type", sa.String(length=128), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("started_at", TIMESTAMP, nullable=False),
        sa.Column("finished_at", TIMESTAMP, nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.Column("tags", sa.JSON(), nullable=False),
        sa.Column("notes", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=True),
        sa.Column("python_version", sa.String(length=64), nullable=True),
        sa.Column("git_commit", sa.String(length=64), nullable=True),
        sa.Column("git_dirty", sa.Boolean(), nullable=True),
        sa.Column("git_diff_digest", sa.String(length=80), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.CheckConstraint(
            "state IN ('running', 'finished', 'failed', 'crashed')", name=op.f("ck_runs_state")
        ),
        sa.ForeignKeyConstraint(
            ["project_id"], ["projects.id"], name=op.f("fk_runs_project_id_projects")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_runs")),
    )
    op.create_index("ix_runs_project_name", "runs", ["project_id", "name"])
    op.create_index("ix_runs_project_started", "runs", ["project_id", "started_at"])
    op.create_table(
        "run_metrics",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=False),
        sa.Column("step", sa.BigInteger(), nullable=False),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_metrics_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_metrics")),
    )
    op.create_index("ix_run_metrics_run_step", "run_metrics", ["run_id", "step"])
    op.create_table(
        "versions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("artifact_id", BIG_ID, nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.BigInteger(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("metadata", sa.JSON(), nullable=False),
        sa.Column("created_at", TIMESTAMP, nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.CheckConstraint("state IN ('committed', 'deleted')", name=op.f("ck_versions_state")),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_versions_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_versions_run_id_runs")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_versions")),
        sa.UniqueConstraint("artifact_id", "version", name="uq_versions_artifact_version"),
    )
    op.create_index("ix_versions_digest", "versions", ["digest"])
    op.create_index("ix_versions_run", "versions", ["run_id"])
    op.create_table(
        "aliases",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("artifact_id", BIG_ID, nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("version_id", BIG_ID, nullable=False),
        sa.ForeignKeyConstraint(
            ["artifact_id"], ["artifacts.id"], name=op.f("fk_aliases_artifact_id_artifacts")
        ),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_aliases_version_id_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_aliases")),
        sa.UniqueConstraint("artifact_id", "alias", name="uq_aliases_artifact_alias"),
    )
    op.create_index("ix_aliases_version", "aliases", ["version_id"])
    op.create_table(
        "history",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("version_id", BIG_ID, nullable=False),
        sa.Column("field", sa.String(length=32), nullable=False),
        sa.Column("old", sa.JSON(), nullable=True),
        sa.Column("new", sa.JSON(), nullable=True),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=True),
        sa.Column("user", sa.String(length=255), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_history_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_history_version_id_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_history")),
    )
    op.create_index("ix_history_version", "history", ["version_id", "id"])
    op.create_table(
        "run_artifacts",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("run_id", sa.String(length=16), nullable=False),
        sa.Column("version_id", BIG_ID, nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=False),
        sa.Column("at", TIMESTAMP, nullable=False),
        sa.CheckConstraint(
            "direction IN ('input', 'output')", name=op.f("ck_run_artifacts_direction")
        ),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name=op.f("fk_run_artifacts_run_id_runs")),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_run_artifacts_version_id_versions")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_run_artifacts")),
        sa.UniqueConstraint("run_id", "version_id", "direction", name="uq_run_artifacts_edge"),
    )
    op.create_index("ix_run_artifacts_version", "run_artifacts", ["version_id", "direction"])
    op.create_table(
        "version_tags",
        sa.Column("version_id", BIG_ID, nullable=False),
        sa.Column("tag", sa.String(length=128), nullable=False),
        sa.ForeignKeyConstraint(
            ["version_id"], ["versions.id"], name=op.f("fk_version_tags_version_id_versions")
        ),
        sa.PrimaryKeyConstraint("version_id", "tag", name=op.f("pk_version_tags")),
    )
    op.create_index("ix_version_tags_tag", "version_tags", ["tag"])


def downgrade() -> None:
    op.drop_index("ix_version_tags_tag", table_name="version_tags")
    op.drop_table("version_tags")
    op.drop_index("ix_run_artifacts_version", table_name="run_artifacts")
    op.drop_table("run_artifacts")
    op.drop_index("ix_history_version", table_name="history")
    op.drop_table("history")
    op.drop_index("ix_aliases_version", table_name="aliases")
    op.drop_table("aliases")
    op.drop_index("ix_versions_run", table_name="versions")
    op.drop_index("ix_versions_digest", table_name="versions")
    op.drop_table("versions")
    op.drop_index("ix_run_metrics_run_step", table_name="run_metrics")
    op.drop_table("run_metrics")
    op.drop_index("ix_runs_project_started", table_name="runs")
    op.drop_index("ix_runs_project_name", table_name="runs")
    op.drop_table("runs")
    op.drop_index("ix_artifacts_project_type", table_name="artifacts")
    op.drop_table("artifacts")
    op.drop_table("projects")
