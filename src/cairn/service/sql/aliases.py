"""Aliases and tags of versions: setting, adding and moving them inside a transaction, with a
history entry on every version that changed."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.metadata.tables import Alias, Version, VersionTag
from cairn.service.sql.history import add_history


def aliases_of(s: Session, version_id: int) -> list[str]:
    return list(
        s.scalars(
            sa.select(Alias.alias).where(Alias.version_id == version_id).order_by(Alias.alias)
        )
    )


def set_aliases(
    s: Session,
    artifact_id: int,
    version: Version,
    wanted: Sequence[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
    *,
    record: bool = True,
) -> bool:
    """Make `wanted` the version's aliases, moving them from other versions of the artifact
    (with a history entry on each version that changed). True when anything changed."""
    current = set(aliases_of(s, version.id))
    wanted_set = set(wanted)
    changed = _move_aliases_here(s, artifact_id, version, wanted_set - current, run_id, user, at)
    removed = current - wanted_set
    if removed:
        s.execute(sa.delete(Alias).where(Alias.version_id == version.id, Alias.alias.in_(removed)))
    if (changed or removed) and record:
        add_history(s, version.id, "aliases", sorted(current), sorted(wanted_set), at, run_id, user)
    return changed or bool(removed)


def add_aliases(
    s: Session,
    artifact_id: int,
    version: Version,
    wanted: Sequence[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
    *,
    record: bool = True,
) -> bool:
    """Add `wanted` to the version's aliases (keeping the others)."""
    if not wanted:
        return False
    current = set(aliases_of(s, version.id))
    return set_aliases(
        s, artifact_id, version, sorted(current | set(wanted)), run_id, user, at, record=record
    )


def _move_aliases_here(
    s: Session,
    artifact_id: int,
    version: Version,
    new: set[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
) -> bool:
    if not new:
        return False
    holders = s.execute(
        sa.select(Alias.alias, Alias.version_id).where(
            Alias.artifact_id == artifact_id, Alias.alias.in_(new)
        )
    ).all()
    moved: dict[int, set[str]] = defaultdict(set)
    for alias, holder in holders:
        moved[holder].add(alias)
    for holder, names in sorted(moved.items()):
        before = aliases_of(s, holder)
        after = [a for a in before if a not in names]
        add_history(s, holder, "aliases", before, after, at, run_id, user)
        s.execute(
            sa.update(Alias)
            .where(Alias.artifact_id == artifact_id, Alias.alias.in_(names))
            .values(version_id=version.id)
        )
    fresh = new - {alias for alias, _ in holders}
    if fresh:
        s.execute(
            sa.insert(Alias),
            [
                {"artifact_id": artifact_id, "alias": a, "version_id": version.id}
                for a in sorted(fresh)
            ],
        )
    return True


def set_tags(
    s: Session,
    version: Version,
    wanted: Sequence[str],
    run_id: str | None,
    user: str | None,
    at: datetime,
    *,
    replace: bool,
    record: bool = True,
) -> bool:
    current = set(s.scalars(sa.select(VersionTag.tag).where(VersionTag.version_id == version.id)))
    target = set(wanted) if replace else current | set(wanted)
    added, removed = target - current, current - target
    if removed:
        s.execute(
            sa.delete(VersionTag).where(
                VersionTag.version_id == version.id, VersionTag.tag.in_(removed)
            )
        )
    if added:
        s.execute(
            sa.insert(VersionTag), [{"version_id": version.id, "tag": t} for t in sorted(added)]
        )
    if (added or removed) and record:
        add_history(s, version.id, "tags", sorted(current), sorted(target), at, run_id, user)
    return bool(added or removed)
