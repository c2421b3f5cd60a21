"""Tables of the server's accounts and object permissions (migration 0002).

* ``users``: people and robots that call the server; ``is_admin`` users manage accounts and see
  every project.
* ``api_keys``: a user's keys, stored as the SHA-256 of the secret token (shown once, never
  stored); a revoked key keeps its row (``revoked_at``) so the audit trail stays.
* ``project_members``: a user's role in a project: ``read``, ``write`` or ``admin``.
* ``project_objects``: which objects a project's versions (and runs' code diffs) hold. A user
  may read an object only when a project they may read holds it.
* ``registry_objects`` (migration 0011): which objects the versions linked into a registry's
  collections hold. A registry member (any role) may read an object a registry they belong to
  holds, so `use_artifact("models/clf:production")` downloads without a role in the project.
  Rows stay after an unlink (the members could have downloaded the bytes then).
* ``object_receipts``: objects a user uploaded (they proved they have the bytes), so they may
  reference them in a version they log; ``size`` (migration 0007) counts them against the
  user's upload quota (NULL for receipts recorded before).
* ``dashboard_sessions`` (migration 0007): the dashboard's sign-in sessions: the SHA-256 of a
  random token (the browser's cookie holds the token), the user and the API key they signed in
  with (revoking the key ends its sessions; none for a sign-in with a password, migration
  0012: setting a new password ends those), when it expires, and when it was ended.
* ``users.password_hash`` (migration 0012): an Argon2id hash, for people who sign in to the
  dashboard with a user name and password; API keys stay for scripts.

Declared on the same declarative base as `cairn.metadata.tables`, so the migration test compares
them too (`cairn.metadata.migrate` imports this module).
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cairn.metadata.tables import DIGEST_LENGTH, NAME_LENGTH, Base, BigId, UTCDateTime

ROLES = ("read", "write", "admin")


class User(Base):
    __tablename__ = "users"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(NAME_LENGTH), unique=True)
    is_admin: Mapped[bool] = mapped_column(sa.Boolean)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # an Argon2id hash (migration 0012) for signing in to the dashboard; NULL: keys only
    password_hash: Mapped[str | None] = mapped_column(sa.String(255))


class ApiKey(Base):
    __tablename__ = "api_keys"
    __table_args__ = (sa.Index("ix_api_keys_user", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    label: Mapped[str] = mapped_column(sa.String(NAME_LENGTH))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


class ProjectMember(Base):
    __tablename__ = "project_members"
    __table_args__ = (
        sa.CheckConstraint("role IN ('read', 'write', 'admin')", name="role"),
        sa.Index("ix_project_members_user", "user_id"),
    )

    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"), primary_key=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    role: Mapped[str] = mapped_column(sa.String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)


class ProjectObject(Base):
    __tablename__ = "project_objects"
    __table_args__ = (sa.Index("ix_project_objects_digest", "digest"),)

    project_id: Mapped[int] = mapped_column(sa.ForeignKey("projects.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)


class RegistryObject(Base):
    __tablename__ = "registry_objects"
    __table_args__ = (sa.Index("ix_registry_objects_digest", "digest"),)

    registry_id: Mapped[int] = mapped_column(sa.ForeignKey("registries.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)


class ObjectReceipt(Base):
    __tablename__ = "object_receipts"

    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"), primary_key=True)
    digest: Mapped[str] = mapped_column(sa.String(DIGEST_LENGTH), primary_key=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    size: Mapped[int | None] = mapped_column(sa.BigInteger)


class DashboardSession(Base):
    __tablename__ = "dashboard_sessions"
    __table_args__ = (sa.Index("ix_dashboard_sessions_user", "user_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    user_id: Mapped[int] = mapped_column(sa.ForeignKey("users.id"))
    # the key signed in with; NULL for a sign-in with a password (migration 0012)
    key_id: Mapped[int | None] = mapped_column(sa.ForeignKey("api_keys.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


__all__ = [
    "ROLES",
    "ApiKey",
    "DashboardSession",
    "ObjectReceipt",
    "ProjectMember",
    "ProjectObject",
    "RegistryObject",
    "User",
]
