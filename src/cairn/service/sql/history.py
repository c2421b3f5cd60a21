"""The append-only history of each version (who changed what, when, from which run)."""

from __future__ import annotations

import functools
import getpass
import socket
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.records import HistoryEntry
from cairn.metadata.tables import Artifact, History, Project, Version
from cairn.service.audit import current_actor
from cairn.service.sql.artifacts import find_version
from cairn.service.sql.audit import record
from cairn.service.sql.common import SqlBase
from cairn.service.sql.webhooks import version_event


@functools.cache
def local_identity() -> str:
    """``USER@HOST`` of this process: who made a change on a machine without accounts."""
    try:
        name = getpass.getuser()
    except Exception:  # no USER/LOGNAME and no passwd entry (some containers)
        name = "unknown"
    return f"{name}@{socket.gethostname()}"


def author(user: str | None) -> str | None:
    """The best identity for a change: the account (``user``); on a server without accounts
    (open mode), ``anonymous@ADDRESS`` of the client; in the embedded mode, ``USER@HOST``."""
    if user is not None:
        return user
    actor = current_actor()
    if actor is not None:  # a request on a server
        if actor.user is not None:
            return actor.user
        return f"anonymous@{actor.address}" if actor.address else None
    return local_identity()


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
    who = author(user)
    s.add(
        History(
            version_id=version_id, field=field, old=old, new=new, at=at, run_id=run_id, user=who
        )
    )
    version_event(s, version_id, field, old, new, at, who)  # for the project's webhooks
    if current_actor() is not None:  # a change made on a server: the audit log too
        project, name, number = s.execute(
            sa.select(Project.name, Artifact.name, Version.version)
            .join(Artifact, Artifact.project_id == Project.id)
            .join(Version, Version.artifact_id == Artifact.id)
            .where(Version.id == version_id)
        ).one()
        target = f"{project}/{name}:v{number}"
        record(s, f"version.{field}", target, old, new, project=project, user=user)


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
