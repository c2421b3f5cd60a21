"""The append-only history of each version (who changed what, when, from which run)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.records import HistoryEntry
from cairn.metadata.tables import History
from cairn.service.sql.artifacts import find_version
from cairn.service.sql.common import SqlBase
from cairn.service.sql.webhooks import version_event


def add_history(
    s: Session,
    version_id: int,
    field: str,
    old: Any,
    new: Any,
    at: datetime,
    run_id: str | None,
    user: str | None,
) -> None:
    s.add(
        History(
            version_id=version_id, field=field, old=old, new=new, at=at, run_id=run_id, user=user
        )
    )
    version_event(s, version_id, field, old, new, at, user)  # for the project's webhooks


class HistoryMixin(SqlBase):
    def history(self, version_id: int) -> list[HistoryEntry]:
        def work(s: Session) -> list[HistoryEntry]:
            version = find_version(s, version_id)
            rows = s.scalars(
                sa.select(History).where(History.version_id == version.id).order_by(History.id)
            )
            return [
                HistoryEntry(
                    version_id=h.version_id,
                    field=h.field,
                    old=h.old,
                    new=h.new,
                    at=h.at,
                    run_id=h.run_id,
                    user=h.user,
                )
                for h in rows
            ]

        return self._read(work)
