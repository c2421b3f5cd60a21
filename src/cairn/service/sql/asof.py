"""As-of questions about a project's artifacts ("which version held 'production' at noon on
Monday?"), answered by replaying the versions' append-only history up to that time."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.digest import is_digest
from cairn.core.names import check_alias, check_artifact_name, check_project, is_version_label
from cairn.core.records import VersionInfo
from cairn.errors import ArtifactNotFoundError, InvalidInputError, InvalidNameError
from cairn.metadata.tables import History, Version
from cairn.service.sql.artifacts import find_artifact, version_infos
from cairn.service.sql.common import SqlBase


def _alive_at(s: Session, artifact_id: int, at: datetime) -> Any:
    """Versions of the artifact that existed at ``at`` (created by then, not deleted by then)."""
    deleted = (
        sa.select(History.version_id)
        .where(History.field == "deleted", History.at <= at)
        .scalar_subquery()
    )
    return sa.select(Version).where(
        Version.artifact_id == artifact_id,
        Version.created_at <= at,
        Version.id.not_in(deleted),
    )


def alias_holder_at(s: Session, artifact_id: int, alias: str, at: datetime) -> int | None:
    """The id of the version holding ``alias`` at ``at``, replayed from the history (each
    version's 'created' entry lists its first aliases; each 'aliases' entry its new list)."""
    held: dict[int, set[str]] = {}
    rows = s.execute(
        sa.select(History.version_id, History.field, History.new)
        .join(Version, Version.id == History.version_id)
        .where(
            Version.artifact_id == artifact_id,
            History.field.in_(("created", "aliases")),
            History.at <= at,
        )
        .order_by(History.id)
    )
    for version_id, field, new in rows:
        if field == "created":
            held[version_id] = set((new or {}).get("aliases", []))
        else:
            held[version_id] = set(new or [])
    holders = [vid for vid, names in held.items() if alias in names]
    return max(holders) if holders else None


@dataclass(frozen=True)
class AliasMove:
    """``alias`` came to version ``version`` of an artifact (None: it was removed) at ``at``."""

    alias: str
    version: int | None
    at: datetime
    user: str | None = None
    run_id: str | None = None


class AsOfMixin(SqlBase):
    def alias_history(self, project: str, name: str) -> list[AliasMove]:
        """Every alias change of an artifact's versions, oldest first, replayed from the
        versions' append-only history (a move is the old holder's removal, then the new
        holder's addition, at the same time). ``latest`` moves by itself and is not listed."""
        check_project(project)
        check_artifact_name(name)

        def work(s: Session) -> list[AliasMove]:
            _, artifact = find_artifact(s, project, name)
            rows = s.execute(
                sa.select(
                    Version.version,
                    History.field,
                    History.new,
                    History.at,
                    History.user,
                    History.run_id,
                )
                .join(Version, Version.id == History.version_id)
                .where(
                    Version.artifact_id == artifact.id,
                    History.field.in_(("created", "aliases")),
                )
                .order_by(History.id)
            )
            held: dict[int, set[str]] = {}
            moves: list[AliasMove] = []
            for number, field, new, at, user, run_id in rows:
                if field == "created":
                    now = set((new or {}).get("aliases", []) if isinstance(new, dict) else [])
                else:
                    now = set(new or [])
                now.discard("latest")
                before = held.get(number, set())
                moves += [AliasMove(a, None, at, user, run_id) for a in sorted(before - now)]
                moves += [AliasMove(a, number, at, user, run_id) for a in sorted(now - before)]
                held[number] = now
            return moves

        return self._read(work)

    def resolve_at(self, project: str, name: str, ref: str, at: datetime) -> VersionInfo:
        """The version ``ref`` ('latest', 'vN', an alias or a digest) named at time ``at``."""
        check_project(project)
        check_artifact_name(name)
        if not isinstance(at, datetime) or at.tzinfo is None:
            raise InvalidInputError(
                f"'at' is a timezone-aware date and time (e.g. 2026-11-30T12:00Z), not {at!r}"
            )
        if not isinstance(ref, str):
            raise InvalidNameError(f"invalid version reference {ref!r}")
        if ref.startswith("blake3:"):
            if not is_digest(ref):
                raise InvalidNameError(
                    f"invalid digest {ref!r}: expected 'blake3:' and 64 lowercase hex digits"
                )
        elif ref != "latest" and not is_version_label(ref):
            check_alias(ref)

        def work(s: Session) -> VersionInfo:
            _, artifact = find_artifact(s, project, name)
            alive = _alive_at(s, artifact.id, at)
            if ref == "latest":
                query = alive.order_by(Version.version.desc()).limit(1)
            elif is_version_label(ref):
                query = alive.where(Version.version == int(ref[1:]))
            elif ref.startswith("blake3:"):
                query = alive.where(Version.digest == ref).order_by(Version.version.desc())
            else:
                holder = alias_holder_at(s, artifact.id, ref, at)
                query = alive.where(Version.id == holder)
            version = s.scalars(query.limit(1)).first()
            if version is None:
                raise ArtifactNotFoundError(
                    f"{project}/{name} had no version {ref!r} at {at.isoformat()}"
                )
            info = version_infos(s, [version])[0]
            return info

        return self._read(work)


__all__ = ["AliasMove", "AsOfMixin", "alias_holder_at"]
