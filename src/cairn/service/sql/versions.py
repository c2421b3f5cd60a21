"""Versions: committing one (deduplicated by digest), resolving a reference, listing, editing
and deleting."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from cairn.core.digest import is_digest
from cairn.core.names import (
    check_alias,
    check_artifact_name,
    check_project,
    check_tag,
    check_type,
    is_version_label,
)
from cairn.core.records import VersionInfo
from cairn.errors import ArtifactNotFoundError, InvalidInputError, InvalidNameError, StateError
from cairn.metadata.engine import lock_artifact
from cairn.metadata.tables import Alias, Artifact, Version, VersionTag
from cairn.service.sql.aliases import add_aliases, aliases_of, set_aliases, set_tags
from cairn.service.sql.artifacts import (
    ensure_artifact,
    find_artifact,
    find_version,
    missing_ref_message,
    version_infos,
    version_label,
)
from cairn.service.sql.common import COMMITTED, DELETED, OUTPUT, SqlBase, utcnow
from cairn.service.sql.history import add_history
from cairn.service.sql.lineage import add_edge
from cairn.service.sql.lookups import quick_resolve
from cairn.service.sql.projects import ensure_project
from cairn.service.sql.runs import find_run
from cairn.service.validate import (
    check_aliases,
    check_int,
    check_order,
    check_page,
    check_str,
    check_tags,
    json_dict,
)


class VersionsMixin(SqlBase):
    def commit_version(
        self,
        project: str,
        name: str,
        type: str,
        *,
        digest: str,
        size: int,
        file_count: int,
        description: str = "",
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] = (),
        tags: Sequence[str] = (),
        run_id: str | None = None,
        user: str | None = None,
        within: Callable[[Session], None] | None = None,
    ) -> tuple[VersionInfo, bool]:
        """``within`` (SQL only, not part of `Registry`): more work done first in the same
        transaction (finishing a distributed version removes its parts there)."""
        check_project(project)
        if user is not None:
            check_str("user", user)
        check_artifact_name(name)
        check_type(type)
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidInputError(
                f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
            )
        check_int("size", size)
        check_int("file_count", file_count)
        check_str("description", description)
        meta = json_dict("metadata", metadata)
        want_aliases = check_aliases(aliases)
        want_tags = check_tags(tags)

        def work(s: Session) -> tuple[VersionInfo, bool]:
            if within is not None:
                within(s)
            run = find_run(s, run_id) if run_id is not None else None
            who = user if user is not None else (run.user if run is not None else None)
            proj = ensure_project(s, project)
            artifact = ensure_artifact(s, proj, name, type, description)
            now = utcnow()
            existing = s.scalars(
                sa.select(Version)
                .where(
                    Version.artifact_id == artifact.id,
                    Version.digest == digest,
                    Version.state == COMMITTED,
                )
                .order_by(Version.version.desc())
                .limit(1)
            ).one_or_none()
            if existing is not None:
                # a re-log: the run is not the version's producer (lineage draws only the run
                # that made it); the run's outputs list it, and the version's history says so
                relogged = run is not None and run.id != existing.run_id
                if relogged and run is not None and add_edge(s, run.id, existing.id, OUTPUT, now):
                    relog = {"run": run.id, "digest": digest}
                    add_history(s, existing.id, "relogged", None, relog, now, run.id, who)
                changed = add_aliases(s, artifact.id, existing, want_aliases, run_id, who, now)
                changed |= set_tags(s, existing, want_tags, run_id, who, now, replace=False)
                if changed:
                    artifact.updated_at = now
                return version_infos(s, [existing])[0], False

            last = s.scalar(
                sa.select(sa.func.max(Version.version)).where(Version.artifact_id == artifact.id)
            )
            version = Version(
                artifact_id=artifact.id,
                version=0 if last is None else last + 1,
                digest=digest,
                size=size,
                file_count=file_count,
                description=description,
                meta=meta,
                created_at=now,
                run_id=run_id,
                state=COMMITTED,
            )
            s.add(version)
            s.flush()
            add_aliases(s, artifact.id, version, want_aliases, run_id, who, now, record=False)
            set_tags(s, version, want_tags, run_id, who, now, replace=False, record=False)
            created = {
                "version": version.version,
                "digest": digest,
                "aliases": sorted(want_aliases),
                "tags": sorted(want_tags),
            }
            add_history(s, version.id, "created", None, created, now, run_id, who)
            artifact.updated_at = now
            if description:
                artifact.description = description
            if run is not None:
                add_edge(s, run.id, version.id, OUTPUT, now)
            s.flush()
            return version_infos(s, [version])[0], True

        return self._write(work)

    def resolve(self, project: str, name: str, ref: str = "latest") -> VersionInfo:
        check_project(project)
        check_artifact_name(name)
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
            found = quick_resolve(s, project, name, ref)
            if found is not None:
                return found
            _, artifact = find_artifact(s, project, name)
            live = sa.select(Version).where(
                Version.artifact_id == artifact.id, Version.state == COMMITTED
            )
            if ref == "latest":
                query = live.order_by(Version.version.desc()).limit(1)
            elif is_version_label(ref):
                query = live.where(Version.version == int(ref[1:]))
            elif ref.startswith("blake3:"):
                query = live.where(Version.digest == ref).order_by(Version.version.desc()).limit(1)
            else:
                query = live.join(Alias, Alias.version_id == Version.id).where(
                    Alias.artifact_id == artifact.id, Alias.alias == ref
                )
            version = s.scalars(query).first()
            if version is None:
                raise ArtifactNotFoundError(missing_ref_message(s, project, artifact, ref))
            return version_infos(s, [version])[0]

        return self._read(work)

    def get_version(self, version_id: int) -> VersionInfo:
        def work(s: Session) -> VersionInfo:
            return version_infos(s, [find_version(s, version_id)])[0]

        return self._read(work)

    def list_versions(
        self,
        project: str,
        name: str,
        *,
        limit: int = 100,
        offset: int = 0,
        order: str = "-version",
        tags: Sequence[str] | None = None,
    ) -> list[VersionInfo]:
        check_project(project)
        check_artifact_name(name)
        check_page(limit, offset)
        sort = check_order(order)
        want_tags = check_tags(tags)

        def work(s: Session) -> list[VersionInfo]:
            _, artifact = find_artifact(s, project, name)
            query = sa.select(Version).where(
                Version.artifact_id == artifact.id, Version.state == COMMITTED
            )
            for tag in want_tags:  # every tag asked for
                query = query.where(
                    sa.exists().where(VersionTag.version_id == Version.id, VersionTag.tag == tag)
                )
            column = Version.version if sort[1] == "version" else Version.created_at
            direction = column.desc() if sort[0] else column.asc()
            tiebreak = Version.version.desc() if sort[0] else Version.version.asc()
            versions = s.scalars(
                query.order_by(direction, tiebreak).limit(limit).offset(offset)
            ).all()
            return version_infos(s, versions)

        return self._read(work)

    def update_version(
        self,
        version_id: int,
        *,
        description: str | None = None,
        metadata: dict[str, Any] | None = None,
        aliases: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        run_id: str | None = None,
        user: str | None = None,
    ) -> VersionInfo:
        if description is not None:
            check_str("description", description)
        meta = json_dict("metadata", metadata) if metadata is not None else None
        want_aliases = check_aliases(aliases) if aliases is not None else None
        want_tags = check_tags(tags) if tags is not None else None
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> VersionInfo:
            if run_id is not None:
                find_run(s, run_id)
            version = find_version(s, version_id)
            lock_artifact(s, version.artifact_id)
            s.refresh(version)
            if version.state != COMMITTED:
                raise StateError(
                    f"version {version.id} ({version_label(s, version)}) is deleted and cannot be "
                    "changed; log the files again to make a new version"
                )
            now = utcnow()
            changed = False
            if description is not None and description != version.description:
                add_history(
                    s,
                    version.id,
                    "description",
                    version.description,
                    description,
                    now,
                    run_id,
                    user,
                )
                version.description = description
                changed = True
            if meta is not None and meta != version.meta:
                add_history(s, version.id, "metadata", version.meta, meta, now, run_id, user)
                version.meta = meta
                changed = True
            if want_aliases is not None:
                changed |= set_aliases(
                    s, version.artifact_id, version, want_aliases, run_id, user, now
                )
            if want_tags is not None:
                changed |= set_tags(s, version, want_tags, run_id, user, now, replace=True)
            if changed:
                s.execute(
                    sa.update(Artifact)
                    .where(Artifact.id == version.artifact_id)
                    .values(updated_at=now)
                )
            s.flush()
            return version_infos(s, [version])[0]

        return self._write(work)

    def delete_artifact(
        self,
        project: str,
        name: str,
        *,
        run_id: str | None = None,
        user: str | None = None,
    ) -> int:
        check_project(project)
        check_artifact_name(name)
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> int:
            if run_id is not None:
                find_run(s, run_id)
            _, artifact = find_artifact(s, project, name)
            lock_artifact(s, artifact.id)
            live = s.scalars(
                sa.select(Version)
                .where(Version.artifact_id == artifact.id, Version.state == COMMITTED)
                .order_by(Version.version)
            ).all()
            now = utcnow()
            for version in live:
                set_aliases(s, artifact.id, version, [], run_id, user, now)
                add_history(s, version.id, "deleted", COMMITTED, DELETED, now, run_id, user)
                version.state = DELETED
            if live:
                artifact.updated_at = now
            return len(live)

        return self._write(work)

    def _edit_labels(
        self,
        version_id: int,
        run_id: str | None,
        user: str | None,
        edit: Callable[[Session, Version, datetime], bool],
    ) -> VersionInfo:
        """Run `edit` on the version with its artifact locked, in one transaction."""
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> VersionInfo:
            if run_id is not None:
                find_run(s, run_id)
            version = find_version(s, version_id)
            lock_artifact(s, version.artifact_id)
            s.refresh(version)
            if version.state != COMMITTED:
                raise StateError(
                    f"version {version.id} ({version_label(s, version)}) is deleted and cannot be "
                    "changed; log the files again to make a new version"
                )
            now = utcnow()
            if edit(s, version, now):
                s.execute(
                    sa.update(Artifact)
                    .where(Artifact.id == version.artifact_id)
                    .values(updated_at=now)
                )
            s.flush()
            return version_infos(s, [version])[0]

        return self._write(work)

    def add_alias(
        self, version_id: int, alias: str, *, run_id: str | None = None, user: str | None = None
    ) -> tuple[VersionInfo, int | None]:
        check_alias(alias)
        moved_from: list[int] = []

        def edit(s: Session, version: Version, now: datetime) -> bool:
            holder = s.scalar(
                sa.select(Version.version)
                .join(Alias, Alias.version_id == Version.id)
                .where(Alias.artifact_id == version.artifact_id, Alias.alias == alias)
            )
            if holder is not None and holder != version.version:
                moved_from.append(holder)
            return add_aliases(s, version.artifact_id, version, [alias], run_id, user, now)

        info = self._edit_labels(version_id, run_id, user, edit)
        return info, (moved_from[0] if moved_from else None)

    def remove_alias(
        self, version_id: int, alias: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        check_alias(alias)

        def edit(s: Session, version: Version, now: datetime) -> bool:
            current = aliases_of(s, version.id)
            if alias not in current:
                raise ArtifactNotFoundError(
                    f"{version_label(s, version)} has no alias {alias!r}; its aliases: "
                    f"{', '.join(current) or '(none)'}"
                )
            keep = [a for a in current if a != alias]
            return set_aliases(s, version.artifact_id, version, keep, run_id, user, now)

        return self._edit_labels(version_id, run_id, user, edit)

    def add_tag(
        self, version_id: int, tag: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        check_tag(tag)

        def edit(s: Session, version: Version, now: datetime) -> bool:
            return set_tags(s, version, [tag], run_id, user, now, replace=False)

        return self._edit_labels(version_id, run_id, user, edit)

    def remove_tag(
        self, version_id: int, tag: str, *, run_id: str | None = None, user: str | None = None
    ) -> VersionInfo:
        check_tag(tag)

        def edit(s: Session, version: Version, now: datetime) -> bool:
            current = sorted(
                s.scalars(sa.select(VersionTag.tag).where(VersionTag.version_id == version.id))
            )
            if tag not in current:
                raise ArtifactNotFoundError(
                    f"{version_label(s, version)} has no tag {tag!r}; its tags: "
                    f"{', '.join(current) or '(none)'}"
                )
            keep = [t for t in current if t != tag]
            return set_tags(s, version, keep, run_id, user, now, replace=True)

        return self._edit_labels(version_id, run_id, user, edit)

    def delete_version(
        self,
        version_id: int,
        *,
        force: bool = False,
        run_id: str | None = None,
        user: str | None = None,
    ) -> None:
        if user is not None:
            check_str("user", user)

        def work(s: Session) -> None:
            if run_id is not None:
                find_run(s, run_id)
            version = find_version(s, version_id)
            lock_artifact(s, version.artifact_id)
            s.refresh(version)
            if version.state == DELETED:
                return  # already deleted: deleting is idempotent
            current = aliases_of(s, version.id)
            if current and not force:
                raise StateError(
                    f"{version_label(s, version)} has aliases {', '.join(current)}: move or remove "
                    "them first (update_version(..., aliases=[])), or pass force=True to "
                    "delete it and drop its aliases"
                )
            now = utcnow()
            set_aliases(s, version.artifact_id, version, [], run_id, user, now)
            add_history(s, version.id, "deleted", COMMITTED, DELETED, now, run_id, user)
            version.state = DELETED
            s.execute(
                sa.update(Artifact).where(Artifact.id == version.artifact_id).values(updated_at=now)
            )

        self._write(work)

    def versions_with_digest(self, digest: str) -> list[VersionInfo]:
        if not isinstance(digest, str) or not is_digest(digest):
            raise InvalidInputError(
                f"invalid digest {digest!r}: expected 'blake3:' and 64 lowercase hex digits"
            )

        def work(s: Session) -> list[VersionInfo]:
            versions = s.scalars(
                sa.select(Version)
                .where(Version.digest == digest, Version.state == COMMITTED)
                .order_by(Version.id)
            ).all()
            return version_infos(s, versions)

        return self._read(work)

    def all_root_digests(self) -> list[str]:
        def work(s: Session) -> list[str]:
            return list(
                s.scalars(
                    sa.select(Version.digest)
                    .where(Version.state == COMMITTED)
                    .distinct()
                    .order_by(Version.digest)
                )
            )

        return self._read(work)
