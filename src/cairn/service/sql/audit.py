"""The audit log: `record` appends an entry inside the caller's transaction (so an entry exists
exactly when its change does); `AuditMixin.audit_log` reads it back, filtered."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.records import AuditRecord
from cairn.errors import InvalidInputError
from cairn.metadata.tables import AuditEntry
from cairn.service.audit import current_actor
from cairn.service.sql.common import SqlBase, utcnow
from cairn.service.validate import check_page


def record(
    s: Session,
    action: str,
    target: str,
    before: Any,
    after: Any,
    *,
    project: str | None = None,
    registry: str | None = None,
    user: str | None = None,
) -> None:
    """Append an audit entry when a server request is acting (see `cairn.service.audit`)."""
    actor = current_actor()
    if actor is None:
        return
    s.add(
        AuditEntry(
            at=utcnow(),
            user=actor.user if actor.user is not None else user,
            address=actor.address,
            action=action,
            project=project,
            registry_name=registry,
            target=target[:512],
            before=before,
            after=after,
        )
    )


class AuditMixin(SqlBase):
    def audit_log(
        self,
        *,
        user: str | None = None,
        project: str | None = None,
        registry: str | None = None,
        action: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditRecord]:
        """Entries oldest first; ``action`` matches exactly or as a prefix ending in '.'
        (``"collection."``)."""
        check_page(limit, offset)
        for name, when in (("since", since), ("until", until)):
            if when is not None and (not isinstance(when, datetime) or when.tzinfo is None):
                raise InvalidInputError(f"{name} is a timezone-aware date and time, not {when!r}")

        def work(s: Session) -> list[AuditRecord]:
            query = sa.select(AuditEntry)
            if user is not None:
                query = query.where(AuditEntry.user == user)
            if project is not None:
                query = query.where(AuditEntry.project == project)
            if registry is not None:
                query = query.where(AuditEntry.registry_name == registry)
            if action:
                if action.endswith("."):
                    query = query.where(AuditEntry.action.startswith(action, autoescape=True))
                else:
                    query = query.where(AuditEntry.action == action)
            if since is not None:
                query = query.where(AuditEntry.at >= since)
            if until is not None:
                query = query.where(AuditEntry.at < until)
            rows = s.scalars(query.order_by(AuditEntry.id).limit(limit).offset(offset))
            return [
                AuditRecord(
                    id=r.id,
                    at=r.at,
                    action=r.action,
                    target=r.target,
                    user=r.user,
                    address=r.address,
                    project=r.project,
                    registry=r.registry_name,
                    before=r.before,
                    after=r.after,
                )
                for r in rows
            ]

        return self._read(work)


__all__ = ["AuditMixin", "record"]
