"""The metadata schema as SQLAlchemy 2 typed declarative models.

The migrations in ``cairn/metadata/migrations/versions`` create exactly this schema (a test
compares them); change both together and add a migration for every change.

Conventions:
* timestamps are stored and handed back as timezone-aware UTC (`UTCDateTime`);
* JSON columns use the portable ``JSON`` type (PostgreSQL ``json``, which keeps key order);
* integer surrogate keys are 64-bit on PostgreSQL and ``INTEGER PRIMARY KEY`` on SQLite;
* rows of versions, history and lineage edges are never physically deleted by the registry.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

#: 64-bit on PostgreSQL; plain INTEGER on SQLite so that it aliases the rowid (autoincrement)
BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

NAME_LENGTH = 128
DIGEST_LENGTH = 80  # "blake3:" + 64 hex digits, with room to spare


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend.

    PostgreSQL stores ``timestamptz``; SQLite has no time zones, so values are stored as naive
    UTC and made aware again when read.
    """

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: Cairn stores timezone-aware UTC times")
        value = value.astimezone(UTC)
        if dialect.name == "sqlite":
            return value.replace(tzinfo=None)
        return value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# PostgreSQL only (migration 0010): a stored, generated `jsonb` copy of `versions.metadata` with
# a GIN index, read by metadata search (one binary document per row instead of a json->jsonb
# cast per term, and `@>` equality answered from the index). `metadata` itself stays `json` so a
# version's metadata keeps the key order it was logged with. Not a model attribute: nothing
# writes it (the database computes it); `PG_ONLY_SCHEMA` names what schema comparisons skip.
PG_METADATA_SEARCH = "metadata_search"
PG_ONLY_SCHEMA = frozenset({PG_METADATA_SEARCH, "ix_versions_metadata_search"})


NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Run(Base):
    __tablename__ = "runs"
    __table_args__ = (
        sa.CheckConstraint("state IN ('running', 'finished', 'failed', 'crashed')", name="state"),
        sa.Index("ix_runs_project_started", "project_id", "started_at"),
        sa.Index("ix_runs_project_name", "project_id", "name"),
    )

    id: Mapped[str] = mapped_column(sa.String(16), primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    job_type: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    state: Mapped[str] = mapped_column(sa.String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # last sign of life from the run's process; a 'running' run silent for longer than
    # config.run_timeout() is reported as crashed
    heartbeat_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    config: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    tags: Mapped[list[str]] = mapped_column(sa.JSON)
    notes: Mapped[str] = mapped_column(sa.Text)
    host: Mapped[str | None] = mapped_column(sa.String(255))
    python_version: Mapped[str | None] = mapped_column(sa.String(64))
    git_commit: Mapped[str | None] = mapped_column(sa.String(64))
    git_dirty: Mapped[bool | None] = mapped_column(sa.Boolean)
    git_diff_digest: Mapped[str | None] = mapped_column(sa.String(DIGEST_LENGTH))
    user: Mapped[str | None] = mapped_column(sa.String(255))
    # why a failed or crashed run ended: "ValueError: bad shape" (the exception it died of)
    failure: Mapped[str | None] = mapped_column(sa.Text)


class RunMetric(Base):
    __tablename__ = "run_metrics"
    __table_args__ = (sa.Index("ix_run_metrics_run_step", "run_id", "step"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id"))
    step: Mapped[int] = mapped_column(sa.BigInteger)
    data: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (
        sa.UniqueConstraint("project_id", "name", name="uq_artifacts_project_name"),
        sa.Index("ix_artifacts_project_type", "project_id", "type"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"))
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    type: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    description: Mapped[str] = mapped_column(sa.Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class Version(Base):
    __tablename__ = "versions"
    __table_args__ = (
        sa.UniqueConstraint("artifact_id", "version", name="uq_versions_artifact_version"),
        sa.CheckConstraint("state IN ('committed', 'deleted')", name="state"),
        sa.Index("ix_versions_digest", "digest"),
        sa.Index("ix_versions_run", "run_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(sa.ForeignKey("artifacts.id"))
    version: Mapped[int] = mapped_column(sa.Integer)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    file_count: Mapped[int] = mapped_column(sa.BigInteger)
    description: Mapped[str] = mapped_column(sa.Text)
    # `metadata` is reserved on declarative classes, hence the attribute name
    meta: Mapped[dict[str, Any]] = mapped_column("metadata", sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    state: Mapped[str] = mapped_column(sa.String(16))
    # the version's own time to live, counted from created_at: NULL takes its artifact's or
    # project's default (`RetentionPolicy`), 0 never expires, N > 0 expires N seconds after
    ttl_seconds: Mapped[int | None] = mapped_column(sa.BigInteger)


class Alias(Base):
    __tablename__ = "aliases"
    __table_args__ = (
        sa.UniqueConstraint("artifact_id", "alias", name="uq_aliases_artifact_alias"),
        sa.Index("ix_aliases_version", "version_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    artifact_id: Mapped[int] = mapped_column(sa.ForeignKey("artifacts.id"))
    alias: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"))


class VersionTag(Base):
    __tablename__ = "version_tags"
    __table_args__ = (sa.Index("ix_version_tags_tag", "tag"),)

    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), primary_key=True)


class ArtifactTag(Base):
    """Tags of an artifact itself (all its versions), apart from each version's tags."""

    __tablename__ = "artifact_tags"
    __table_args__ = (sa.Index("ix_artifact_tags_tag", "tag"),)

    artifact_id: Mapped[int] = mapped_column(sa.ForeignKey("artifacts.id"), primary_key=True)
    tag: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), primary_key=True)


class History(Base):
    """Append-only log of changes to versions."""

    __tablename__ = "history"
    __table_args__ = (sa.Index("ix_history_version", "version_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"))
    field: Mapped[str] = mapped_column(sa.String(32))
    old: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    new: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    user: Mapped[str | None] = mapped_column(sa.String(255))


class RunArtifact(Base):
    """A lineage edge: the run used (input) or logged (output) the version."""

    __tablename__ = "run_artifacts"
    __table_args__ = (
        sa.UniqueConstraint("run_id", "version_id", "direction", name="uq_run_artifacts_edge"),
        sa.CheckConstraint("direction IN ('input', 'output')", name="direction"),
        sa.Index("ix_run_artifacts_version", "version_id", "direction"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    run_id: Mapped[str] = mapped_column(sa.ForeignKey("runs.id"))
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"))
    direction: Mapped[str] = mapped_column(sa.String(8))
    at: Mapped[datetime] = mapped_column(UTCDateTime)


class RegistryRow(Base):
    """A registry above projects (e.g. ``models``): it holds collections of linked versions.
    ``protected_aliases`` may be set, moved or removed only by its maintainers and admins."""

    __tablename__ = "registries"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), unique=True)
    description: Mapped[str] = mapped_column(sa.Text)
    protected_aliases: Mapped[list[str]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(sa.String(255))


class RegistryMember(Base):
    """A user's role in a registry: viewer < member < maintainer < admin."""

    __tablename__ = "registry_members"
    __table_args__ = (
        sa.CheckConstraint("role IN ('viewer', 'member', 'maintainer', 'admin')", name="role"),
        sa.Index("ix_registry_members_user", "user"),
    )

    registry_id: Mapped[int] = mapped_column(sa.ForeignKey("registries.id"), primary_key=True)
    user: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))


class Collection(Base):
    """A collection in a registry (``models/classifier``): versions linked from any project,
    numbered in link order, with aliases of its own."""

    __tablename__ = "collections"
    __table_args__ = (
        sa.UniqueConstraint("registry_id", "name", name="uq_collections_registry_name"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    registry_id: Mapped[int] = mapped_column(sa.ForeignKey("registries.id"))
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    type: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    description: Mapped[str] = mapped_column(sa.Text)
    tags: Mapped[list[str]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class CollectionLink(Base):
    """Version ``number`` of a collection: a link to a version of an artifact (no bytes are
    copied). Unlinking sets ``unlinked_at``; the row stays (numbers are never reused)."""

    __tablename__ = "collection_links"
    __table_args__ = (
        sa.UniqueConstraint("collection_id", "number", name="uq_collection_links_number"),
        sa.Index("ix_collection_links_version", "version_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    collection_id: Mapped[int] = mapped_column(sa.ForeignKey("collections.id"))
    number: Mapped[int] = mapped_column(sa.Integer)
    version_id: Mapped[int] = mapped_column(sa.ForeignKey("versions.id"))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime)
    unlinked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    user: Mapped[str | None] = mapped_column(sa.String(255))
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))


class CollectionAlias(Base):
    __tablename__ = "collection_aliases"
    __table_args__ = (
        sa.UniqueConstraint("collection_id", "alias", name="uq_collection_aliases_alias"),
        sa.Index("ix_collection_aliases_link", "link_id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    collection_id: Mapped[int] = mapped_column(sa.ForeignKey("collections.id"))
    alias: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    link_id: Mapped[int] = mapped_column(sa.ForeignKey("collection_links.id"))


class CollectionHistory(Base):
    """Append-only log of changes to a collection: links, unlinks, description and tags, and
    one row per alias change (``alias`` set; ``link_id`` the new holder, None when removed),
    from which as-of questions are answered."""

    __tablename__ = "collection_history"
    __table_args__ = (
        sa.Index("ix_collection_history_collection", "collection_id", "id"),
        sa.Index("ix_collection_history_alias", "collection_id", "alias", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    collection_id: Mapped[int] = mapped_column(sa.ForeignKey("collections.id"))
    link_id: Mapped[int | None] = mapped_column(sa.ForeignKey("collection_links.id"))
    field: Mapped[str] = mapped_column(sa.String(32))
    alias: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    old: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    new: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    run_id: Mapped[str | None] = mapped_column(sa.ForeignKey("runs.id"))
    user: Mapped[str | None] = mapped_column(sa.String(255))


class AuditEntry(Base):
    """Append-only audit log of changes: who, when, from where, what (before/after). Written in
    the same transaction as the change it records."""

    __tablename__ = "audit_log"
    __table_args__ = (
        sa.Index("ix_audit_log_at", "at"),
        sa.Index("ix_audit_log_user", "user", "at"),
        sa.Index("ix_audit_log_action", "action", "at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    user: Mapped[str | None] = mapped_column(sa.String(255))
    address: Mapped[str | None] = mapped_column(sa.String(64))
    action: Mapped[str] = mapped_column(sa.String(64))
    project: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    # `registry` is reserved on declarative classes, hence the attribute name
    registry_name: Mapped[str | None] = mapped_column("registry", sa.String(NAME_LENGTH))
    target: Mapped[str] = mapped_column(sa.String(512))
    before: Mapped[Any] = mapped_column(sa.JSON, nullable=True)
    after: Mapped[Any] = mapped_column(sa.JSON, nullable=True)


class Webhook(Base):
    """A URL that receives the events of one project or one registry (exactly one is set),
    signed with ``secret`` (HMAC-SHA256 of the body)."""

    __tablename__ = "webhooks"
    __table_args__ = (
        sa.CheckConstraint("(project IS NULL) <> (registry IS NULL)", name="scope"),
        sa.Index("ix_webhooks_project", "project"),
        sa.Index("ix_webhooks_registry", "registry"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project: Mapped[str | None] = mapped_column(sa.String(NAME_LENGTH))
    registry_name: Mapped[str | None] = mapped_column("registry", sa.String(NAME_LENGTH))
    url: Mapped[str] = mapped_column(sa.String(2048))
    secret: Mapped[str] = mapped_column(sa.String(255))
    events: Mapped[list[str]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    created_by: Mapped[str | None] = mapped_column(sa.String(255))


class WebhookDelivery(Base):
    """The outbox: one row per (event, webhook), written in the transaction of the change.
    ``body`` is the exact JSON sent (and signed) on every attempt."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.CheckConstraint(
            "status IN ('pending', 'delivering', 'delivered', 'failed')", name="status"
        ),
        sa.UniqueConstraint("idempotency_key", name="uq_webhook_deliveries_idempotency_key"),
        sa.Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_webhook", "webhook_id", "id"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    webhook_id: Mapped[int] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    event_id: Mapped[str] = mapped_column(sa.String(64))
    event_type: Mapped[str] = mapped_column(sa.String(64))
    body: Mapped[str] = mapped_column(sa.Text)
    idempotency_key: Mapped[str] = mapped_column(sa.String(64))
    status: Mapped[str] = mapped_column(sa.String(16))
    attempts: Mapped[int] = mapped_column(sa.Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime)
    lease_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_status_code: Mapped[int | None] = mapped_column(sa.Integer)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    response_ms: Mapped[int | None] = mapped_column(sa.Integer)


class WebhookAttempt(Base):
    """The delivery log: one row per attempt (status code or error, response time)."""

    __tablename__ = "webhook_attempts"
    __table_args__ = (sa.Index("ix_webhook_attempts_webhook", "webhook_id", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE")
    )
    webhook_id: Mapped[int] = mapped_column(sa.ForeignKey("webhooks.id", ondelete="CASCADE"))
    attempt: Mapped[int] = mapped_column(sa.Integer)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    status_code: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    response_ms: Mapped[int] = mapped_column(sa.Integer)
    worker: Mapped[str | None] = mapped_column(sa.String(255))


class RetentionPolicy(Base):
    """What retention keeps, for one project, artifact or registry collection (``scope`` is
    ``project:<id>``, ``artifact:<id>`` or ``collection:<id>``; exactly that id is set). A
    NULL field is not set: an artifact's unset fields take its project's. ``ttl_seconds``: the
    default time to live of versions (of a collection: of its links), 0 = never."""

    __tablename__ = "retention_policies"
    __table_args__ = (
        sa.UniqueConstraint("scope", name="uq_retention_policies_scope"),
        sa.CheckConstraint("best_order IN ('asc', 'desc')", name="best_order"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    scope: Mapped[str] = mapped_column(sa.String(64))
    project_id: Mapped[int | None] = mapped_column(sa.ForeignKey("projects.id"))
    artifact_id: Mapped[int | None] = mapped_column(sa.ForeignKey("artifacts.id"))
    collection_id: Mapped[int | None] = mapped_column(sa.ForeignKey("collections.id"))
    ttl_seconds: Mapped[int | None] = mapped_column(sa.BigInteger)
    keep_last: Mapped[int | None] = mapped_column(sa.Integer)
    keep_best: Mapped[int | None] = mapped_column(sa.Integer)
    best_key: Mapped[str | None] = mapped_column(sa.String(255))
    best_order: Mapped[str | None] = mapped_column(sa.String(4))
    keep_used_days: Mapped[int | None] = mapped_column(sa.Integer)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_by: Mapped[str | None] = mapped_column(sa.String(255))


class ArtifactPart(Base):
    """A part of a distributed version not finished yet (migration 0013): what one worker
    stored, as the root of its own tree. ``updated_at`` is the last upsert: a part older than
    gc's grace period is abandoned and removed by gc (`cairn.service.sql.parts`)."""

    __tablename__ = "artifact_parts"
    __table_args__ = (
        sa.UniqueConstraint(
            "project_id", "artifact", "distributed_id", "part", name="uq_artifact_parts_part"
        ),
        sa.Index("ix_artifact_parts_updated_at", "updated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"))
    artifact: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    type: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    distributed_id: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    part: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    root: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH))
    size: Mapped[int] = mapped_column(sa.BigInteger)
    file_count: Mapped[int] = mapped_column(sa.BigInteger)
    run_id: Mapped[str | None] = mapped_column(sa.String(16))
    user: Mapped[str | None] = mapped_column(sa.String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


metadata = Base.metadata

__all__ = [
    "PG_METADATA_SEARCH",
    "PG_ONLY_SCHEMA",
    "Alias",
    "Artifact",
    "ArtifactPart",
    "AuditEntry",
    "Base",
    "BigId",
    "Collection",
    "CollectionAlias",
    "CollectionHistory",
    "CollectionLink",
    "History",
    "Project",
    "RegistryMember",
    "RegistryRow",
    "RetentionPolicy",
    "Run",
    "RunArtifact",
    "RunMetric",
    "UTCDateTime",
    "Version",
    "VersionTag",
    "Webhook",
    "WebhookAttempt",
    "WebhookDelivery",
    "metadata",
]
